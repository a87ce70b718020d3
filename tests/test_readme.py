"""The README's model table is the registry's, not typed by hand."""
from pathlib import Path

from convnet.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_model_table_is_generated(capsys):
    text = README.read_text()
    table = text.split("<!-- models:start -->\n", 1)[1].split("<!-- models:end -->", 1)[0]
    assert main(["models", "--markdown"]) == 0
    assert table == capsys.readouterr().out, "regenerate with `convnet models --markdown`"


def test_readme_opens_with_the_two_commands():
    head = README.read_text()[:600]
    assert "make run" in head and "make test" in head
