import pytest
import yaml

from nonn.config import Config, load_config
from nonn.errors import ConfigError


def test_defaults_roundtrip_through_yaml(tmp_path):
    cfg = load_config(overrides=["students.k=3", "data.limit_train=200", "students.beta=null"])
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    again = load_config(p)
    assert again == cfg
    assert again.students.k == 3 and again.data.limit_train == 200 and again.students.beta is None


def test_required_keys_exist():
    d = Config().to_dict()
    for key in ["data.name", "data.dir", "data.limit_train", "teacher.arch", "teacher.epochs", "students.k",
                "students.arch", "students.epochs", "partition.rule", "partition.seed"]:
        section, name = key.split(".")
        assert name in d[section], key


@pytest.mark.parametrize("override,message", [
    ("students.kk=3", "unknown config key 'students.kk'"),
    ("nosuch.key=1", "unknown config key 'nosuch.key'"),
    ("students.epochs=ten", "students.epochs must be an integer"),
    ("students.k=2.5", "students.k must be an integer"),
    ("partition.rule=louvain", "partition.rule must be one of"),
    ("students.k=0", "students.k must be at least 1"),
    ("data.augment=maybe", "data.augment must be true or false"),
    ("students", "--set takes key=value"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("students: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump({"students": {"epochs": "x"}}))
    with pytest.raises(ConfigError, match="students.epochs"):
        load_config(wrong)


def test_int_is_accepted_where_float_expected():
    assert load_config(overrides={"students.alpha": 1}).students.alpha == 1.0


def test_slice_hash_depends_only_on_its_sections():
    a, b = load_config(), load_config(overrides=["students.epochs=3"])
    assert a.slice_hash("data", "teacher") == b.slice_hash("data", "teacher")
    assert a.slice_hash("students") != b.slice_hash("students")


class _Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("value", "tty", "shown"), [
    ("auto", True, True), ("auto", False, False), ("true", False, True), ("false", True, False)])
def test_progress_bars_default_to_terminals_only(monkeypatch, value, tty, shown):
    monkeypatch.setattr("sys.stderr", _Stream(tty))
    cfg = load_config(None, [f"trainer.progress={value}"])
    assert cfg.trainer.show_progress is shown


def test_progress_takes_only_true_false_or_auto():
    assert Config().trainer.progress == "auto"
    with pytest.raises(ConfigError, match=r"trainer.progress must be true or false or one of 'auto'"):
        load_config(None, ["trainer.progress=sometimes"])


def test_readme_config_block_is_every_default():
    from pathlib import Path

    import yaml

    from nonn.config import Config

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Configuration"):]
    block = section[section.index("```yaml\n") + len("```yaml\n"):]
    block = block[:block.index("```")]
    assert block == Config().to_compact_yaml()  # regenerate the README block with `nonn config`
    assert yaml.safe_load(block) == Config().to_dict()  # and it is a config file that means the defaults


def test_nonn_config_prints_the_resolved_configuration(capsys):
    import yaml

    from nonn.cli import main

    assert main(["config", "--set", "students.k=4", "--set", "teacher.arch=wrn-10-2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["students"]["k"] == 4 and printed["teacher"]["arch"] == "wrn-10-2"
    assert printed["data"]["name"] == "digits"
    assert main(["config", "--set", "students.kk=4"]) == 2
    assert "unknown config key 'students.kk'" in capsys.readouterr().err


def test_students_family_takes_a_registered_family_with_sizes(monkeypatch):
    from nonn.models import register_model_family, registry

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))  # registrations end with the test
    with pytest.raises(ConfigError, match=r"students.family must be one of: wrn, mbv2 \(.*got 'vgg'"):
        load_config(None, ["students.family=vgg"])
    register_model_family("tinyfam", lambda **kw: None, lambda p: {"width": int(p)}, sizes=["tinyfam-2", "tinyfam-1"])
    register_model_family("emptyfam", lambda **kw: None, lambda p: {"width": int(p)})
    assert load_config(None, ["students.family=tinyfam"]).students.family == "tinyfam"
    with pytest.raises(ConfigError, match=r"one of: wrn, mbv2, tinyfam \(.*got 'emptyfam'"):
        load_config(None, ["students.family=emptyfam"])  # registered, but with no sizes to search


def test_loading_the_default_config_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from nonn.config import load_config; load_config(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # `nonn config` stays quick: the family check needs the registry only when asked
