"""Turn expected user errors into one clear line and exit code 2, instead of a traceback."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from mfer.config import ConfigError


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except (ConfigError, FileNotFoundError, *extra) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
