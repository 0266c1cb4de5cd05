"""``--help`` and missing required keys, answered before Hydra, torch or Ray is imported.

Importing the stack a command needs takes 10-20 s; a user asking ``--help``, or one who forgot
``name=``, should not wait for it nor read Hydra's generic help or a traceback. So every console
script first calls ``preflight``, which imports nothing beyond the standard library: ``-h``/``--help``
prints the module's usage text and the command's YAML config with its comments (the comments are the
options' documentation); a key that YAML marks ``???`` and the command line does not set is one line
naming it, exit 2. Only then does the command import Hydra (``hydra_app``) and its own modules.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

HELP_FLAGS = ("-h", "--help")
# A top-level ``key: ???`` line and its comment: the values the user must give.
_REQUIRED = re.compile(r"^([A-Za-z_][\w]*):\s*\?\?\?\s*(?:#\s*(.*))?$")


def _options_text(yaml_text: str) -> str:
    """The YAML as the user's options: Hydra's own plumbing (the ``hydra:`` block, ``hydra/``
    defaults) left out, since it is the same in every command and no option of this one."""
    out, in_hydra = [], False
    for line in yaml_text.splitlines():
        if line.startswith("hydra:"):
            in_hydra = True
            continue
        if in_hydra and (not line.strip() or line[0] in " #"):
            continue
        in_hydra = False
        if "override hydra/" not in line and line.strip() != "- _self_":
            out.append(line)
    kept = [ln for i, ln in enumerate(out)  # a defaults: list left empty by the above goes too
            if ln.strip() != "defaults:" or (i + 1 < len(out) and out[i + 1].lstrip().startswith("-"))]
    return "\n".join(kept).strip()


def required_keys(yaml_text: str) -> dict[str, str]:
    """{key: its comment} for every top-level key the YAML marks ``???``."""
    found = (_REQUIRED.match(line) for line in yaml_text.splitlines())
    return {m.group(1): (m.group(2) or "").strip() for m in found if m}


def given_keys(argv: Sequence[str]) -> set[str]:
    """The keys a Hydra command line sets (``key=v``, ``+key=v``, ``++key=v``; ``a.b=v`` sets ``a.b``)."""
    return {a.split("=", 1)[0].lstrip("+") for a in argv if "=" in a and not a.startswith("-")}


def help_text(prog: str, doc: Optional[str], conf: Path, extra: str = "") -> str:
    options = _options_text(conf.read_text(encoding="utf-8"))
    return (f"{(doc or prog).strip()}\n\nOptions (key=value, Hydra overrides; from {conf.name}):\n\n"
            f"{options}\n{extra}\nHydra's own flags: --cfg job (the composed config), --hydra-help.\n")


def preflight(prog: str, doc: Optional[str], conf: Path, argv: Optional[Sequence[str]] = None,
              extra: str = "") -> None:
    """Answer ``--help`` (exit 0) or a missing required key (one line, exit 2) before any heavy import."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in HELP_FLAGS for a in argv):
        print(help_text(prog, doc, conf, extra))
        sys.exit(0)
    if any(a.startswith("-") for a in argv):  # --cfg, --info, -m …: Hydra's business
        return
    missing = {k: c for k, c in required_keys(conf.read_text(encoding="utf-8")).items() if k not in given_keys(argv)}
    if missing:
        named = "; ".join(f"{k}= ({c})" if c else f"{k}=" for k, c in missing.items())
        print(f"error: {prog}: missing required {named}; e.g. {prog} {' '.join(f'{k}=...' for k in missing)} "
              f"(options: {prog} --help)", file=sys.stderr)
        sys.exit(2)


def hydra_app(task: Callable, config_path: str, config_name: str) -> Callable[[], None]:
    """``task`` as a Hydra app; Hydra is imported only now. ``config_path`` is relative to ``task``'s
    module, as with ``@hydra.main``."""
    import hydra

    return hydra.main(config_path=config_path, config_name=config_name, version_base="1.3")(task)
