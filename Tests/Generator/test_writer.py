from h2rpc_codegen.writer import Writer


def test_block_owns_indentation():
    w = Writer()
    with w.block("struct X {"):
        w.line("var a = 1")
        with w.block("func f() {"):
            w.line("return")
    assert w.text() == "struct X {\n    var a = 1\n    func f() {\n        return\n    }\n}\n"


def test_blank_lines_carry_no_indentation():
    w = Writer()
    with w.block("enum E {"):
        w.blank()
        w.line("")
    assert w.text() == "enum E {\n\n\n}\n"


def test_switch_keeps_cases_at_its_level():
    w = Writer()
    with w.block("func f() {"), w.switch("x"):
        w.line("case 1:")
        with w.indented():
            w.line("break")
    assert w.text() == "func f() {\n    switch x {\n    case 1:\n        break\n    }\n}\n"


def test_doc_from_proto_comment_and_fallback():
    w = Writer()
    with w.indented():
        w.doc(" First line.\n\n Second.  \n", "unused")
        w.doc(None, "Fallback.")
    assert w.text() == "    /// First line.\n    ///\n    /// Second.\n    /// Fallback.\n"


def test_indentation_restored_after_exception():
    w = Writer()
    try:
        with w.block("a {"):
            raise ValueError
    except ValueError:
        pass
    w.line("b")
    assert w.text().endswith("\nb\n")
