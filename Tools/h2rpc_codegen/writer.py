"""An indent-aware line writer: translators say *what* to write, the writer owns indentation."""

from contextlib import contextmanager

INDENT = "    "


class Writer:
    """Collects lines of Swift; `block` and `indented` nest, so no caller formats indentation."""

    def __init__(self):
        self._lines = []
        self._level = 0

    def line(self, text=""):
        """One line at the current level; an empty line carries no indentation."""
        self._lines.append((INDENT * self._level + text).rstrip() if text else "")

    def lines(self, texts):
        for text in texts:
            self.line(text)

    def blank(self):
        self.line()

    @contextmanager
    def indented(self):
        """Everything written inside is one level deeper."""
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1

    @contextmanager
    def block(self, opener, closer="}"):
        """`opener` line, the body one level deeper, then `closer` (e.g. `with w.block("struct X {"):`)."""
        self.line(opener)
        with self.indented():
            yield
        self.line(closer)

    @contextmanager
    def switch(self, subject):
        """`switch subject {` ... `}`: Swift style puts `case` lines at the switch's level."""
        self.line("switch %s {" % subject)
        yield
        self.line("}")

    def doc(self, text, fallback):
        """A `///` comment from a proto comment (or `fallback` when there is none)."""
        text = text if text else fallback
        for raw in text.strip("\n").split("\n"):
            body = raw.rstrip()
            body = body[1:] if body.startswith(" ") else body  # protoc keeps the space after //
            self.line("/// " + body)

    def text(self):
        return "\n".join(self._lines) + "\n"
