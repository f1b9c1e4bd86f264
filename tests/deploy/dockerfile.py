"""Reading the Dockerfile and the build context the way Docker does, for the deployment checks.

Only what this project's Dockerfile uses is supported; anything else raises, so a new construct
in the Dockerfile cannot slip past the checks unread.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    value: str
    line: int

    def flags_and_rest(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` flags (as in ``RUN --mount=...``) and the text after them."""
        flags: dict[str, str] = {}
        rest = self.value.strip()
        while match := re.match(r"--([a-z-]+)=(\S+)\s+", rest):
            flags[match.group(1)] = match.group(2)
            rest = rest[match.end() :]
        return flags, rest


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    @property
    def workdir(self) -> str:
        path = "/"
        for instruction in self.all("WORKDIR"):
            path = str(PurePosixPath(path) / instruction.value.strip())
        return path

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.value):
                name, sep, value = word.partition("=")
                assert sep, f"line {instruction.line}: use ENV NAME=value, not the legacy form"
                values[name] = value
        return values


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    parser = DockerfileParser(path=str(path))
    result: list[Stage] = []
    for item in parser.structure:
        keyword, value = item["instruction"], item["value"]
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
            continue
        assert result, f"line {item['startline'] + 1}: {keyword} before FROM"
        result[-1].instructions.append(Instruction(keyword, value, item["startline"] + 1))
    return result


def runtime_stage() -> Stage:
    return stages()[-1]


def stage_named(name: str) -> Stage:
    for stage in stages():
        if stage.name == name:
            return stage
    raise AssertionError(f"the Dockerfile has no stage named {name!r}")


def exec_form(value: str) -> list[str]:
    """The argument list of an exec-form ``CMD``/``HEALTHCHECK CMD`` (a JSON array of strings)."""
    argv = json.loads(value)
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), value
    return argv


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """Options and exec-form command of the runtime stage's ``HEALTHCHECK``."""
    options, rest = runtime_stage().last("HEALTHCHECK").flags_and_rest()
    keyword, _, command = rest.partition(" ")
    assert keyword == "CMD", f"HEALTHCHECK must be 'CMD [...]', got {rest!r}"
    return options, exec_form(command.strip())


def cmd() -> list[str]:
    return exec_form(runtime_stage().last("CMD").value)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


@dataclass
class IgnoreRule:
    negated: bool
    pattern: str
    regex: re.Pattern[str]


def dockerignore_rules(root: Path = ROOT) -> list[IgnoreRule]:
    """The lines of ``.dockerignore``, in order."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern = str(PurePosixPath(line.lstrip("!").strip())).lstrip("/")
        rules.append(IgnoreRule(line.startswith("!"), pattern, _pattern_regex(pattern)))
    return rules


def is_ignored(relative: str, rules: list[IgnoreRule]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(relative).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.match(prefix) for prefix in prefixes):
            ignored = not rule.negated
    return ignored


def _may_reinclude(directory: str, rules: list[IgnoreRule]) -> bool:
    """Whether some ``!pattern`` could bring back a file below an ignored ``directory``."""
    for rule in rules:
        if rule.negated:
            literal = re.split(r"[*?\[]", rule.pattern, maxsplit=1)[0]
            if literal.startswith(directory + "/") or directory.startswith(literal):
                return True
    return False


def build_context(destination: Path, root: Path = ROOT) -> Path:
    """Copy the files Docker would send as the build context (``.dockerignore`` applied)."""
    rules = dockerignore_rules(root)
    for current, directories, files in os.walk(root):
        base = Path(current).relative_to(root)
        # Skipping ignored trees (.git, .venv) keeps the walk fast; the result is the same.
        directories[:] = [
            d
            for d in directories
            if not is_ignored((base / d).as_posix(), rules)
            or _may_reinclude((base / d).as_posix(), rules)
        ]
        for name in files:
            relative = (base / name).as_posix()
            source = root / relative
            if not source.is_symlink() and not is_ignored(relative, rules):
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return destination


def copy_sources(stage: Stage) -> list[str]:
    """Build-context paths named by the stage's ``COPY`` instructions (``--from`` ones excluded)."""
    sources: list[str] = []
    for instruction in stage.all("COPY"):
        flags, rest = instruction.flags_and_rest()
        if "from" not in flags:
            sources.extend(shlex.split(rest)[:-1])
    return sources


def apply_copies(stage: Stage, context: Path, rootfs: Path) -> None:
    """Carry out the stage's ``COPY`` instructions from ``context`` into ``rootfs``."""
    workdir = "/"
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / instruction.value.strip())
            (rootfs / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        if instruction.keyword != "COPY":
            continue
        flags, rest = instruction.flags_and_rest()
        assert set(flags) <= {"chown", "chmod"}, f"line {instruction.line}: unsupported {flags}"
        *sources, dest = shlex.split(rest)
        dest_path = PurePosixPath(workdir) / dest
        into_directory = dest.endswith("/") or dest in {".", "./"} or len(sources) > 1
        for source in sources:
            matches = sorted(context.glob(source))
            assert matches, f"line {instruction.line}: {source} is not in the build context"
            for match in matches:
                if match.is_dir():
                    shutil.copytree(match, rootfs / str(dest_path).lstrip("/"), dirs_exist_ok=True)
                else:
                    target = dest_path / match.name if into_directory else dest_path
                    (rootfs / str(target).lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(match, rootfs / str(target).lstrip("/"))
