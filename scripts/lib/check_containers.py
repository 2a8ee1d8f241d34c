"""Checks of Dockerfile and docker-compose.yml that the schema and linters cannot make.

Used by scripts/check-containers.sh:
    check_containers.py dockerfile PATH
    check_containers.py compose RESOLVED_YAML [HELP_TEXT]
Prints one line per problem and exits 1 if there is any.
"""

import fnmatch
import os
import re
import sys

KNOWN_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}


def dockerignore_excludes(path, patterns):
    """Whether .dockerignore (patterns with ! exceptions, last match wins) drops path."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            excluded = not negate
    return excluded


def check_dockerfile(path):
    import dockerfile

    problems = []
    commands = dockerfile.parse_file(path)
    stages = []  # names (or indexes) of the stages seen so far
    final_user = None
    final_entrypoint = None
    for command in commands:
        name = command.cmd.upper()
        where = f"{path}:{command.start_line}"
        if name not in KNOWN_INSTRUCTIONS:
            problems.append(f"{where}: unknown instruction {command.cmd}")
            continue
        if name == "FROM":
            value = [v.lower() for v in command.value]
            stages.append(value[2] if len(value) == 3 and value[1] == "as" else str(len(stages)))
            final_user, final_entrypoint = None, None
        elif name == "USER":
            final_user = command.value[0]
        elif name == "ENTRYPOINT":
            final_entrypoint = command
        elif name == "COPY":
            source_stage = next((f.split("=", 1)[1] for f in command.flags if f.startswith("--from=")), None)
            if source_stage is not None:
                if source_stage.lower() not in stages[:-1]:
                    problems.append(f"{where}: COPY --from={source_stage} names no earlier stage")
                continue
            context = os.path.dirname(os.path.abspath(path))
            ignore_file = os.path.join(context, ".dockerignore")
            patterns = []
            if os.path.exists(ignore_file):
                with open(ignore_file, encoding="utf-8") as f:
                    patterns = [l.strip() for l in f if l.strip() and not l.startswith("#")]
            for source in command.value[:-1]:
                source = source.rstrip("/")
                if not os.path.exists(os.path.join(context, source)):
                    problems.append(f"{where}: COPY source {source} does not exist")
                elif dockerignore_excludes(source, patterns):
                    problems.append(f"{where}: COPY source {source} is excluded by .dockerignore")
    if len(stages) < 2:
        problems.append(f"{path}: expected a multi-stage build, found {len(stages)} stage(s)")
    if final_user is None or final_user.split(":")[0] in ("0", "root"):
        problems.append(f"{path}: the final stage must switch to a non-root USER")
    if final_entrypoint is None or not final_entrypoint.json:
        problems.append(f"{path}: the final stage needs an exec-form (JSON) ENTRYPOINT")
    return problems


def check_compose(resolved, help_text):
    import yaml

    with open(resolved, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    services = config.get("services", {})
    problems = []
    for wanted in ("postgres", "nats", "pgoutput-stream"):
        if wanted not in services:
            problems.append(f"service {wanted} is missing")
    if problems:
        return problems
    known_env = None
    if help_text:
        with open(help_text, encoding="utf-8") as f:
            known_env = set(re.findall(r"\[env: (PGOUTPUT_STREAM_[A-Z0-9_]+)", f.read()))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/") and not os.path.exists(source):
                problems.append(f"{name}: bind-mounted {source} does not exist")
        env = service.get("environment", {}) or {}
        for key in env:
            if key.startswith("PGOUTPUT_STREAM_") and known_env is not None and key not in known_env:
                problems.append(f"{name}: {key} is not an environment variable of pgoutput-stream --help")
        if "restart" not in service:
            problems.append(f"{name}: no restart policy")
    postgres = " ".join(map(str, services["postgres"].get("command", [])))
    if "wal_level=logical" not in postgres:
        problems.append("postgres: not started with -c wal_level=logical")
    if not any("docker-entrypoint-initdb.d" in str(v) for v in services["postgres"].get("volumes", [])):
        problems.append("postgres: examples/setup.sql is not mounted into /docker-entrypoint-initdb.d")
    nats = services["nats"].get("entrypoint", []) + services["nats"].get("command", [])
    if not {"-js", "--jetstream"} & set(map(str, nats)):
        problems.append("nats: JetStream (-js) is not enabled")
    daemon = services["pgoutput-stream"]
    build = daemon.get("build", {})
    context = build.get("context", ".") if isinstance(build, dict) else build
    if not os.path.exists(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
        problems.append("pgoutput-stream: build context has no Dockerfile")
    depends = daemon.get("depends_on", {})
    for dependency in ("postgres", "nats"):
        condition = depends.get(dependency, {}).get("condition") if isinstance(depends, dict) else None
        if condition != "service_healthy":
            problems.append(f"pgoutput-stream: does not wait for {dependency} to be healthy")
        if "healthcheck" not in services[dependency]:
            problems.append(f"{dependency}: no healthcheck")
    env = daemon.get("environment", {})
    for required in ("PGOUTPUT_STREAM_CONNECTION", "PGOUTPUT_STREAM_SLOT", "PGOUTPUT_STREAM_PUBLICATION"):
        if required not in env:
            problems.append(f"pgoutput-stream: {required} is not set")
    return problems


def main():
    kind, path, *rest = sys.argv[1:]
    if kind == "dockerfile":
        problems = check_dockerfile(path)
    else:
        problems = check_compose(path, rest[0] if rest else None)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{path}: structure OK")


if __name__ == "__main__":
    main()
