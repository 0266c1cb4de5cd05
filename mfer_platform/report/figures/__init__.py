"""The paper's figures for any trial or export: t-SNE of pooled features, confusion matrices,
Grad-CAM (``mfer-figures``, and the figure sections of ``mfer-report``)."""
