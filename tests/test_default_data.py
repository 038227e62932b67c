"""The dataset a command reads without --data is $CAPTIONER_DATA, never a folder guessed from where the package
or the working directory happens to be (../shared/data is this repository's development layout, not the user's)."""
from __future__ import annotations

from captioner.cli.main import main


def test_without_data_or_the_variable_the_command_asks_for_data(tmp_path, monkeypatch, capsys):
    flickr = tmp_path / "shared" / "data" / "flickr8k"  # the development layout, beside the working directory
    flickr.mkdir(parents=True)
    (flickr / "Flickr8k.token.txt").write_text("a.jpg#0\ta dog runs\n")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("CAPTIONER_DATA", raising=False)
    assert main(["evaluate", "--limit", "1"]) == 2
    assert capsys.readouterr().err == ("error: pass --data (a Flickr8k folder or a Karpathy JSON) "
                                       "or set $CAPTIONER_DATA\n")


def test_the_variable_names_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAPTIONER_DATA", str(tmp_path / "nowhere"))
    assert main(["evaluate", "--limit", "1"]) == 2
    assert capsys.readouterr().err == f"error: --data {tmp_path / 'nowhere'}: no such file or folder\n"
    # --data wins over the variable
    assert main(["evaluate", "--limit", "1", "--data", str(tmp_path / "elsewhere")]) == 2
    assert f"--data {tmp_path / 'elsewhere'}: no such file" in capsys.readouterr().err
