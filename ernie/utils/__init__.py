"""Small shared utilities: user-facing errors and atomic file output."""
from .errors import UserError, cli_main
from .io import (atomic_dir, atomic_write, check_output_path, check_writable, fsync_dir, list_input_files,
                 output_error, resolve_dir)

__all__ = ["UserError", "cli_main", "atomic_write", "atomic_dir", "check_output_path", "check_writable", "fsync_dir",
           "list_input_files", "output_error", "resolve_dir"]
