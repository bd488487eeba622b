"""Small shared utilities: user-facing errors, the argument toolkit, label files and atomic file output."""

from .cli import ArgumentParser, field_annotation, require_finite, require_positive, str2bool
from .errors import Stopped, UserError, cli_main, is_interrupt
from .io import (
    atomic_dir,
    atomic_write,
    check_output_path,
    check_writable,
    fault_point,
    fsync_dir,
    list_input_files,
    output_error,
    remove_dir,
    remove_stale_temporaries,
    resolve_dir,
)
from .labels import LABEL_FILE, read_label_file, write_label_file

__all__ = [
    "ArgumentParser",
    "field_annotation",
    "require_finite",
    "require_positive",
    "str2bool",
    "UserError",
    "cli_main",
    "is_interrupt",
    "Stopped",
    "atomic_write",
    "atomic_dir",
    "check_output_path",
    "check_writable",
    "fault_point",
    "fsync_dir",
    "list_input_files",
    "output_error",
    "remove_stale_temporaries",
    "remove_dir",
    "remove_dir",
    "resolve_dir",
    "LABEL_FILE",
    "read_label_file",
    "write_label_file",
]
