"""User-facing errors: one line, naming the file and the problem. Never shown with a traceback."""


class LvsegError(ValueError):
    """Bad input from a user (file, array, checkpoint, option). The message is one line."""

    def __init__(self, message: str, path=None):
        self.path, self.message = path, " ".join(str(message).split())   # the problem without the path
        text = f"{path}: {message}" if path is not None else message
        super().__init__(" ".join(str(text).split()))


class LvsegWarning(UserWarning):
    """Something a user should know that stops nothing (a series left out, a pair skipped). One line."""


def warn(message: str, path=None) -> None:
    """Warn in one line naming ``path`` and the problem, as `LvsegError` words its errors; shown once per message.
    napari shows it as a notification; on a terminal it reads ``lvseg: warning: PATH: MESSAGE``."""
    import warnings

    warnings.warn(LvsegWarning(str(LvsegError(message, path))), stacklevel=2)


def _format_warning(message, category, filename, lineno, line=None, _plain=None):
    """Ours one line, without the source line Python adds; everyone else's as Python formats them."""
    if issubclass(category, LvsegWarning):
        return f"lvseg: warning: {message}\n"
    return _plain(message, category, filename, lineno, line)


def _install_format() -> None:
    import functools
    import warnings

    if not getattr(warnings.formatwarning, "_lvseg", False):
        formatter = functools.partial(_format_warning, _plain=warnings.formatwarning)
        formatter._lvseg = True
        warnings.formatwarning = formatter


_install_format()
