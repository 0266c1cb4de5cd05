"""From a comparison to what a researcher looks at: tables (Markdown/CSV/LaTeX/HTML), plots, the paper's
figures (``figures/``), published numbers beside ours, and the self-contained HTML pages."""
