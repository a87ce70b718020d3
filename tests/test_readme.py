"""The README's lists are the code's (the model table, the optimisers), not typed by hand."""
import re
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


def test_optimizer_lists_are_the_table():
    """The README names the optimisers twice (the training table, the `train` options); both
    lists are train.optim.OPTIMIZERS, in its order."""
    from convnet.train.optim import OPTIMIZERS

    text = README.read_text()
    in_table = re.search(r"`optim\.name=([a-z0-9_/]+)`", text)
    in_options = re.search(r"`--optimizer` \(([a-z0-9_, ]+)\)", text)
    assert in_table and in_options, "the README no longer lists the optimisers where this test looks"
    assert in_table.group(1).split("/") == list(OPTIMIZERS)
    assert in_options.group(1).split(", ") == list(OPTIMIZERS)
