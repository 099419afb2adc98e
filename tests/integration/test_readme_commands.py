"""The docs' Meltano commands are Meltano 4.4.1's, and the README's install block runs
as written: in a fresh `meltano init` project, from this checkout, against the emulator.

Issue #18: the README said `meltano add loader target-monk` (4.4.1 reads `loader` as a
second plugin name) and `meltano config target-monk set ...` (`No such command`), and
the old install test used the same broken form and passed.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
from meltano.cli import cli
from meltano.core.plugin import PluginType

from target_monk.emulator import MonkEmulator
from testkit.messages import interleaved_input
from testkit.processes import API_KEY, MELTANO, ROOT, meltano_env

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TESTED_BLOCK = "<!-- tests/integration/test_readme_commands.py runs this block as written"
PREFIXES = {"do", "then", "else", "time", "exec", "!"}
PLUGIN_TYPE_WORDS = {word for kind in PluginType for word in (kind.value, kind.singular)}


def shell_blocks(text: str) -> list[str]:
    """The fenced code blocks of `text` in bash, sh or no language."""
    blocks: list[str] = []
    lines: list[str] | None = None  # the block being read, if a fence is open
    shell = False
    for line in text.splitlines():
        if not line.startswith("```"):
            if lines is not None:
                lines.append(line)
        elif lines is None:
            lines, shell = [], line[3:].strip() in ("", "bash", "sh")
        else:
            if shell:
                blocks.append("\n".join(lines))
            lines = None
    return blocks


def meltano_commands(text: str) -> list[str]:
    """Every `meltano ...` command in the shell code blocks and inline code of `text`."""
    found = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            if "meltano" not in line:
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words: list[str] = []
            for word in [*lexer, ";"]:
                if word.strip("&|;<>()"):
                    words.append(word)
                    continue
                while words and (words[0] in PREFIXES or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
                    words.pop(0)  # `do`, `time`, VAR=value before the command
                if words[:1] == ["meltano"]:
                    found.append(shlex.join(words))
                words = [] if word != "<" else ["<"]  # after `<`: a file, not a command
    # Inline code with arguments (`meltano run` alone names the command in prose).
    found.extend(re.findall(r"(?<!`)`(meltano [^`\s]+ [^`\n]+)`", text))
    return found


def meltano_4_4_1_refuses(command: str) -> str | None:
    """Why Meltano 4.4.1's command line would refuse `command` (or misread it), if it
    would: an unknown command or option, or a plugin type where plugin names go."""
    args = shlex.split(command)[1:]
    group: click.Command = cli
    ctx: click.Context | None = None
    path = ["meltano"]
    while isinstance(group, click.Group):
        ctx = group.make_context(" ".join(path), args, parent=ctx, resilient_parsing=True)
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return None
        name, sub, args = group.resolve_command(ctx, rest)
        if sub is None or name is None:
            return f"no such command {rest[0]!r} in {' '.join(path)}"
        path.append(name)
        group = sub
    options = {opt for param in group.params for opt in (*param.opts, *param.secondary_opts)}
    interspersed = group.context_settings.get("allow_interspersed_args", True)
    for word in args:
        if not word.startswith("-") and not interspersed:
            break  # `meltano invoke PLUGIN ARGS...`: what follows the plugin is the plugin's
        if word.startswith("-") and word.split("=", 1)[0] not in options:
            return f"no such option {word!r} for {' '.join(path)}"
    params = group.make_context(" ".join(path), args, parent=ctx, resilient_parsing=True).params
    names = params.get("plugin") or params.get("plugin_name") or ()
    for name in [names] if isinstance(names, str) else names:
        if name in PLUGIN_TYPE_WORDS:
            return f"{name!r} is read as a plugin name: use --plugin-type {name}"
    return None


@pytest.mark.parametrize(
    "command",
    [
        "meltano add loader target-monk --from-ref hub/target-monk.yml",
        "meltano config target-monk set api_key mk_live_x",
        "meltano config target-monk list",
        "meltano run --frce tap-postgres target-monk",
    ],
)
def test_the_check_refuses_meltano_3_forms(command: str) -> None:
    assert meltano_4_4_1_refuses(command) is not None


def test_what_follows_the_plugin_of_invoke_is_the_plugin_s() -> None:
    assert meltano_4_4_1_refuses("meltano invoke target-monk:reconcile --resend-missing") is None
    assert meltano_4_4_1_refuses("meltano invoke --resend-missing target-monk:reconcile")


def test_every_meltano_command_in_the_docs_is_meltano_4_4_1_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Parsing only: never prompt (`meltano state set` asks to confirm without --force).
    monkeypatch.setattr(click.Option, "prompt_for_value", lambda self, ctx: None)
    commands = {doc.name: meltano_commands(doc.read_text()) for doc in DOCS}
    readme = commands["README.md"]
    assert "meltano add --plugin-type loader target-monk --from-ref target-monk.yml" in readme
    assert "meltano config set target-monk api_key mk_live_..." in readme
    assert sum(map(len, commands.values())) > 20  # the parser finds the docs' commands
    refused = {
        f"{doc}: {command}": why
        for doc, found in commands.items()
        for command in found
        if (why := meltano_4_4_1_refuses(command))
    }
    assert refused == {}


def readme_install_block() -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme.split(TESTED_BLOCK, 1)[1]
    return re.search(r"```bash\n(.*?)```", after, re.DOTALL)[1]  # type: ignore[index]


@pytest.mark.orchestrate
def test_the_readme_install_block_runs_as_written(emulator: MonkEmulator, tmp_path: Path) -> None:
    data = interleaved_input({"s": 1200}, state_every=600)
    (tmp_path / "singer-output.jsonl").write_text(data.text())
    script = readme_install_block().replace("/path/to/target-monk", str(ROOT))
    script = script.replace("mk_live_...", API_KEY)
    # The project is made in tmp_path; the tap's output is at hand in it.
    script = script.replace("cd my-project", "cd my-project && mv ../singer-output.jsonl .")
    env = meltano_env(
        {
            "TARGET_MONK_API_URL": emulator.url,
            "PIP_CONSTRAINT": str(ROOT / ".venv" / "constraints.txt"),
            "UV_CONSTRAINT": str(ROOT / ".venv" / "constraints.txt"),
        }
    )
    env["PATH"] = f"{Path(MELTANO).parent}:{env['PATH']}"  # `meltano`, as after `scripts/setup`
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    project = tmp_path / "my-project"

    assert "flush_interval_seconds" in done.stdout  # meltano config list
    assert API_KEY not in done.stdout + done.stderr
    assert API_KEY in (project / ".env").read_text()
    assert API_KEY not in (project / "meltano.yml").read_text()
    dry_run_bodies = (project / "target-monk-dry-run.jsonl").read_text().splitlines()
    assert sum(len(json.loads(body)["events"]) for body in dry_run_bodies) == 1200
    # The dry run sent nothing: the real run wrote each key once.
    assert emulator.held_keys() == data.keys_before_state[-1][1]
    assert sum(emulator.writes.values()) == 1200
    states = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert states[-1] == data.keys_before_state[-1][0]

    # Through Meltano too, a misspelt setting is refused, not ignored.
    for command in (["config", "set", "target-monk", "dryrun", "true"], ["invoke", "target-monk"]):
        typo = subprocess.run(
            [MELTANO, *command],
            cwd=project,
            env=env,
            input="",
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert typo.returncode == 1
    assert "'dryrun' (did you mean 'dry_run'?)" in typo.stderr
    assert sum(emulator.writes.values()) == 1200
