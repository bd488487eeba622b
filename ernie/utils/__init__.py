"""Small shared utilities: user-facing errors, the argument toolkit, label files and atomic file output."""
from .cli import ArgumentParser, str2bool
from .errors import UserError, cli_main
from .io import atomic_dir, atomic_write, check_output_path, fsync_dir, list_input_files, resolve_dir

__all__ = ["ArgumentParser", "str2bool", "UserError", "cli_main", "atomic_write", "atomic_dir", "check_output_path", "fsync_dir", "list_input_files", "resolve_dir"]
