import tomllib

import pytest
import yaml

from course_lib.core import (DEFAULTS_FILE, SETTINGS_HEADER, CourseSettings, find_settings_file, is_preset_section,
                             read_settings, parse_value)
from conftest import ROOT


def write_settings(path, body):
    path.write_text(f"# {SETTINGS_HEADER}\n{body}", encoding="utf-8")
    return path


def test_precedence_argument_env_file_default(tmp_path, monkeypatch):
    s = CourseSettings(write_settings(tmp_path / "settings.ini", "[runtime]\ndevice = cpu\n"))
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert s.get("device") == "cpu" and s.origin("device") == str(tmp_path / "settings.ini")
    assert s.get("hub_timeout") == read_settings(DEFAULTS_FILE)["runtime"]["hub_timeout"] == "2"
    assert s.origin("hub_timeout") == "built-in default"
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    assert s.get("device") == "mps" and s.device == "mps"
    assert s.origin("device") == "environment variable COURSE_DEVICE"
    assert s.get("device", "cuda:1") == "cuda:1" and s.origin("device", "cuda:1") == "argument"


def test_preset_values_are_typed_and_env_overridable(tmp_path, monkeypatch):
    s = CourseSettings(write_settings(tmp_path / "settings.ini", "[preset.cpu]\nepochs = 3\n"))
    cpu = s.preset("cpu")
    assert cpu["epochs"] == 3 and cpu["block_out_channels"] == (32, 64, 64) and cpu["learning_rate"] == 2e-3
    monkeypatch.setenv("COURSE_CPU_EPOCHS", "5")
    assert s.preset("cpu")["epochs"] == 5
    with pytest.raises(ValueError, match="`preset` must be one of 'smoke', 'cpu', 'gpu'"): s.preset("tpu")


def test_paths_are_relative_to_the_settings_file(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    s = CourseSettings(write_settings(tmp_path / "settings.ini", "[data]\ndata_dir = my-data\n"))
    assert s.get_path("data_dir") == tmp_path.resolve() / "my-data"
    assert s.get_path("data_dir", "/abs") == type(tmp_path)("/abs")


def test_unknown_setting_names_the_known_ones():
    with pytest.raises(KeyError, match="No course setting 'colour'.*device"): CourseSettings().get("colour")
    with pytest.raises(AttributeError): _ = CourseSettings().colour


def test_find_settings_skips_foreign_settings_ini(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_SETTINGS", raising=False)
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nlib_name = other\n")  # e.g. an old nbdev project
    found = find_settings_file(tmp_path)
    assert found != tmp_path / "settings.ini"
    ours = write_settings(tmp_path / "ours.ini", "")
    monkeypatch.setenv("COURSE_SETTINGS", str(ours))
    assert find_settings_file(tmp_path) == ours
    monkeypatch.setenv("COURSE_SETTINGS", str(tmp_path / "missing.ini"))
    with pytest.raises(FileNotFoundError, match="COURSE_SETTINGS"): find_settings_file(tmp_path)


def test_the_packaged_defaults_are_the_one_source_and_document_every_setting():
    text = DEFAULTS_FILE.read_text(encoding="utf-8")
    assert SETTINGS_HEADER in text[:1000] and "nbdev does not read this file" in text
    defaults = read_settings(DEFAULTS_FILE)
    assert defaults["data"]["fashion_hub_id"] == "zalando-datasets/fashion_mnist"
    assert defaults["models"]["sd_model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    names = [k for s in defaults.sections() if not is_preset_section(s) for k in defaults[s]]
    assert len(names) == len(set(names)), "each COURSE_<NAME> variable must name one setting"
    lines = text.splitlines()
    # every setting outside the presets has a comment line somewhere above it in its section
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not any(h.startswith(("[preset", "[vae", "[latent"))
                                                                  for h in lines[:i] if h.startswith("[")):
            section = max(j for j in range(i) if lines[j].startswith("["))
            assert any(above.startswith("#") for above in lines[section:i]), f"undocumented setting: {line}"


def test_settings_without_a_file_are_the_packaged_defaults_value_for_value(tmp_path, monkeypatch):
    for name in [v for v in __import__("os").environ if v.startswith("COURSE_")]: monkeypatch.delenv(name)
    monkeypatch.setenv("COURSE_SETTINGS", str(write_settings(tmp_path / "empty.ini", "")))
    settings, defaults = CourseSettings(), read_settings(DEFAULTS_FILE)
    for section in defaults.sections():
        for name, value in defaults[section].items():
            got = (settings.preset(section.split(".", 1)[1], section.split(".")[0])[name] if is_preset_section(section)
                   else settings.get(name))
            assert got == (parse_value(value) if is_preset_section(section) else value), (section, name)


def test_the_checkout_settings_ini_is_yours_and_sets_only_known_settings():
    text = (ROOT / "settings.ini").read_text(encoding="utf-8")
    assert SETTINGS_HEADER in text[:1000] and "course_lib/settings.ini" in text
    yours, defaults = read_settings(ROOT / "settings.ini"), read_settings(DEFAULTS_FILE)
    assert all(section in defaults and set(yours[section]) <= set(defaults[section]) for section in yours.sections())


def test_parse_value():
    assert parse_value(" 16, 32 ") == (16, 32) and parse_value("yes") is True and parse_value("cpu") == "cpu"


def dependency_names(requirements):
    return {r.split(";")[0].split("[")[0].replace(">", " ").replace("<", " ").replace("=", " ").split()[0].lower()
            for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(r for r in pip_section if not r.startswith("-")) == sorted(project["dependencies"])
    assert "python=3.11" in env["dependencies"]
    assert any(r.startswith("-e") or r == "." for r in pip_section), "environment.yml must install the package"


def test_lock_pins_every_dependency_and_never_torchvision():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = [line.strip() for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    pinned = {pin.split("==")[0].lower().replace("_", "-") for pin in lock}
    wanted = dependency_names(project["dependencies"] + project["optional-dependencies"]["dev"])
    assert {w.replace("_", "-") for w in wanted} <= pinned
    assert all("==" in pin for pin in lock)
    assert "torchvision" not in pinned and "torchvision" not in dependency_names(project["dependencies"])
