"""User-facing errors: one line, naming the file and the problem. Never shown with a traceback."""


class LvsegError(ValueError):
    """Bad input from a user (file, array, checkpoint, option). The message is one line."""

    def __init__(self, message: str, path=None):
        self.path, self.message = path, " ".join(str(message).split())   # the problem without the path
        text = f"{path}: {message}" if path is not None else message
        super().__init__(" ".join(str(text).split()))
