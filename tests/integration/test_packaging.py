"""Packaging: systemd units, install script, Docker files and shell scripts.

No systemd runs as PID 1 and no Docker engine runs on the machines this
project is tested on, so these are checked statically, with the real tools
where they work without a running manager or engine:

- every unit under scripts/systemd/ passes `systemd-analyze verify` with
  @bindir@ replaced by the folder of the binaries under test, and the services
  keep their hardening (`systemd-analyze security --offline=yes`);
- the units have the shape the daemons rely on (descriptor names, notify,
  watchdog, shared runtime folder, no dependency between the two services);
- the Redis drop-in example (scripts/systemd/event-server-redis.conf) only
  wants and orders after redis-server.service and verifies on both services,
  and the documented Redis variant (bus socket masked, services enabled
  alone) enables with `systemctl --root` on an installed tree;
- the sample environment file lists every setting of both daemons' --help
  with its default;
- scripts/install with DESTDIR and PREFIX=/usr installs the expected tree;
- shellcheck passes on every shell script;
- docker/Dockerfile is multi-stage, runs as a non-root user, has a
  HEALTHCHECK, adds no remote URL, and its build stage (the COPY set and the
  cmake commands) builds here, with the runtime package list covering every
  library the binaries load; both compose files pass `docker-compose config`;
- docker/Dockerfile.redis is Debian's redis-server on debian:12-slim, not as
  root; docker/docker-compose.cluster.yml passes `docker-compose config` with
  Redis and two daemons of each kind on its stream, the password only in a
  secret file, and the Redis configuration it gives runs on Debian's
  redis-server (on a private UNIX socket) with the password off its command
  line and environment.

Only the compose parts are skipped, with a message, when docker-compose
(Debian's package) is missing. Run with /usr/bin/python3; EVS_LISTEN_BIN and
EVS_BROADCAST_BIN name the binaries (ctest sets them).
"""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT_DIR = ROOT / "scripts" / "systemd"
LISTEN_BIN = Path(os.environ.get("EVS_LISTEN_BIN", ROOT / "build" / "event-listen")).resolve()
BROADCAST_BIN = Path(os.environ.get("EVS_BROADCAST_BIN", ROOT / "build" / "event-broadcast")).resolve()

SERVICES = ["event-broadcast.service", "event-listen.service", "event-broadcast@.service"]
REDIS_DROP_IN = UNIT_DIR / "event-server-redis.conf"
SOCKETS = ["event-broadcast.socket", "event-broadcast-ws.socket", "event-listen.socket",
           "event-broadcast@.socket"]
UNITS = SERVICES + SOCKETS
# The highest `systemd-analyze security` exposure a service may have (0-10
# scale; the hardened units score 1.2, a minimal unit 9.6).
MAX_EXPOSURE = 2.0


def run(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in argv], **kwargs)


def parse_unit(path):
    """Returns {section: [(key, value), ...]} of a unit file (keys may repeat)."""
    sections = {}
    current = None
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def substitute_units(dest):
    """Copies the units into dest with the binaries under test in ExecStart=,
    plus an instance of each template (systemd-analyze verifies instances)."""
    for name in UNITS:
        text = (UNIT_DIR / name).read_text()
        text = text.replace("@bindir@/event-listen", str(LISTEN_BIN))
        text = text.replace("@bindir@/event-broadcast", str(BROADCAST_BIN))
        (dest / name).write_text(text)
    for template in ("event-broadcast@.service", "event-broadcast@.socket"):
        (dest / template.replace("@.", "@test.")).symlink_to(template)


def help_settings(binary):
    """(variable, default) for every option in a daemon's --help."""
    out = run([binary, "--help"], check=True).stdout
    found = re.findall(r"\(env ([A-Z_]+)(?:, default ([^)]*))?\)", out)
    return [(name, "" if default in ('""', "") else default) for name, default in found]


class SystemdUnits(unittest.TestCase):
    def setUp(self):
        for binary in (LISTEN_BIN, BROADCAST_BIN):
            self.assertTrue(os.access(binary, os.X_OK), f"{binary} is not built")
        self.assertIsNotNone(shutil.which("systemd-analyze"),
                             "systemd-analyze is missing (Debian package systemd)")
        self.tmp = Path(tempfile.mkdtemp(prefix="evs-units-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        substitute_units(self.tmp)

    def test_every_unit_verifies(self):
        names = UNITS + ["event-broadcast@test.service", "event-broadcast@test.socket"]
        for name in names:
            with self.subTest(unit=name):
                result = run(["systemd-analyze", "verify", self.tmp / name])
                # Only our own units' complaints count (verify also loads the
                # machine's units, whose warnings are not ours).
                ours = [line for line in (result.stdout + result.stderr).splitlines()
                        if "event-" in line]
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertEqual(ours, [], "\n".join(ours))

    def test_services_stay_hardened(self):
        for name in ["event-broadcast.service", "event-listen.service", "event-broadcast@test.service"]:
            with self.subTest(unit=name):
                result = run(["systemd-analyze", "security", "--offline=yes", self.tmp / name])
                self.assertEqual(result.returncode, 0, result.stderr)
                match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
                self.assertIsNotNone(match, result.stdout[-500:])
                score = float(match.group(1))
                print(f"{name}: exposure {score}")
                self.assertLessEqual(score, MAX_EXPOSURE, result.stdout)

    def test_units_fit_the_daemons(self):
        names = {"event-broadcast.socket": "bus", "event-broadcast@.socket": "bus",
                 "event-broadcast-ws.socket": "ws", "event-listen.socket": "http"}
        for name, fdname in names.items():
            with self.subTest(unit=name):
                unit = parse_unit(UNIT_DIR / name)
                self.assertEqual(values(unit, "Socket", "FileDescriptorName"), [fdname])
                self.assertEqual(len(values(unit, "Socket", "ListenStream")), 1)
        for name in ["event-broadcast.socket", "event-broadcast@.socket"]:
            unit = parse_unit(UNIT_DIR / name)
            self.assertEqual(values(unit, "Socket", "SocketMode"), ["0660"])
            self.assertEqual(values(unit, "Socket", "SocketUser"), ["event-server"])
            self.assertEqual(values(unit, "Socket", "SocketGroup"), ["event-server"])
        self.assertEqual(values(parse_unit(UNIT_DIR / "event-broadcast.socket"), "Socket", "ListenStream"),
                         ["%t/event-server/bus.sock"])
        self.assertEqual(values(parse_unit(UNIT_DIR / "event-broadcast@.socket"), "Socket", "ListenStream"),
                         ["%t/event-server/bus-%i.sock"])

        for name in SERVICES:
            with self.subTest(unit=name):
                unit = parse_unit(UNIT_DIR / name)
                service = dict(unit["Service"])
                self.assertEqual(service.get("Type"), "notify")
                self.assertEqual(service.get("NotifyAccess"), "main")
                self.assertIn("WatchdogSec", service)
                self.assertEqual(service.get("Restart"), "on-failure")
                self.assertEqual(service.get("ExecReload"), "/bin/kill -HUP $MAINPID")
                self.assertEqual(service.get("RuntimeDirectory"), "event-server")
                self.assertEqual(service.get("RuntimeDirectoryPreserve"), "yes")
                self.assertEqual(service.get("User"), "event-server")
                self.assertNotIn("DynamicUser", service)
                self.assertEqual(service.get("ProtectSystem"), "strict")
                self.assertEqual(service.get("NoNewPrivileges"), "yes")
                self.assertEqual(service.get("CapabilityBoundingSet"), "")
                self.assertEqual(service.get("RestrictAddressFamilies"), "AF_UNIX AF_INET AF_INET6")
                self.assertTrue(service.get("ExecStart", "").startswith("@bindir@/event-"))
                self.assertIn("-/etc/event-server/event-server.env",
                              values(unit, "Service", "EnvironmentFile"))
                # Either daemon starts, stops and restarts without the other.
                for key in ("Requires", "Requisite", "BindsTo", "PartOf", "Upholds"):
                    self.assertEqual(values(unit, "Unit", key), [], f"{name} has {key}=")
                for key in ("Wants", "After"):
                    for value in values(unit, "Unit", key):
                        self.assertNotRegex(value, r"event-(listen|broadcast)(@[^ ]*)?\.service",
                                            f"{name}: {key}={value}")
        template = dict(parse_unit(UNIT_DIR / "event-broadcast@.service")["Service"])
        self.assertIn("--reuse-port=true", template["ExecStart"])
        self.assertIn("--bus %t/event-server/bus-%i.sock", template["ExecStart"])

    def test_redis_drop_in_orders_after_redis_and_verifies(self):
        drop_in = parse_unit(REDIS_DROP_IN)
        self.assertEqual(drop_in, {"Unit": [("Wants", "redis-server.service"),
                                            ("After", "redis-server.service")]},
                         "Wants= and After= only: restarting Redis must leave the daemons running")
        for name in ["event-listen.service", "event-broadcast.service", "event-broadcast@test.service"]:
            with self.subTest(unit=name):
                folder = self.tmp / (name.replace("@test.", "@.") + ".d")
                folder.mkdir(exist_ok=True)
                shutil.copy(REDIS_DROP_IN, folder / "redis.conf")
                result = run(["systemd-analyze", "verify", self.tmp / name])
                ours = [line for line in (result.stdout + result.stderr).splitlines()
                        if "event-" in line]
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertEqual(ours, [], "\n".join(ours))

    def test_sysusers_entry_creates_the_user(self):
        if shutil.which("systemd-sysusers") is None:
            self.fail("systemd-sysusers is missing (Debian package systemd)")
        root = self.tmp / "root"
        (root / "etc").mkdir(parents=True)
        for name in ("passwd", "group", "shadow", "gshadow"):
            (root / "etc" / name).touch()
        result = run(["systemd-sysusers", f"--root={root}", UNIT_DIR / "event-server.sysusers"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex((root / "etc" / "passwd").read_text(), r"(?m)^event-server:x:\d+:\d+:")
        self.assertRegex((root / "etc" / "group").read_text(), r"(?m)^event-server:x:\d+:")


class EnvironmentSample(unittest.TestCase):
    def test_every_setting_with_its_default(self):
        sample = (UNIT_DIR / "event-server.env.sample").read_text()
        lines = set(sample.splitlines())
        for binary in (LISTEN_BIN, BROADCAST_BIN):
            settings = help_settings(binary)
            self.assertGreater(len(settings), 5, f"{binary} --help lists no settings")
            for name, default in settings:
                with self.subTest(daemon=binary.name, setting=name):
                    self.assertTrue(f"#{name}={default}" in lines,
                                    f"scripts/systemd/event-server.env.sample lacks the line #{name}={default}")
        for line in sample.splitlines():
            self.assertTrue(line == "" or line.startswith("#"), f"not commented: {line}")

    def test_redis_variant_is_documented(self):
        sample = (UNIT_DIR / "event-server.env.sample").read_text()
        for text in ("install -m 0640 -o root -g event-server /dev/null /etc/event-server/redis.password",
                     "#   REDIS_PASSWORD_FILE=/etc/event-server/redis.password",
                     "#   REDIS_URL=redis://127.0.0.1:6379",
                     "systemctl mask\n# event-broadcast.socket", "event-server-redis.conf"):
            self.assertIn(text, sample)


class InstallScript(unittest.TestCase):
    def setUp(self):
        self.dest = Path(tempfile.mkdtemp(prefix="evs-install-"))
        self.addCleanup(shutil.rmtree, self.dest, True)
        self.assertEqual(LISTEN_BIN.parent, BROADCAST_BIN.parent, "both binaries in one build folder")

    def install(self, prefix):
        env = dict(os.environ, DESTDIR=str(self.dest), PREFIX=prefix)
        result = run([ROOT / "scripts" / "install", "--no-build", "--build-dir", LISTEN_BIN.parent], env=env)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_help(self):
        result = run([ROOT / "scripts" / "install", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        for word in ("DESTDIR", "PREFIX", "/usr/local", "systemd", "--no-build"):
            self.assertIn(word, result.stdout)
        self.assertFalse(self.dest.exists() and any(self.dest.iterdir()))

    def test_install_tree_with_prefix_usr(self):
        out = self.install("/usr")
        d = self.dest
        for daemon, built in (("event-listen", LISTEN_BIN), ("event-broadcast", BROADCAST_BIN)):
            installed = d / "usr" / "bin" / daemon
            self.assertTrue(installed.is_file())
            self.assertTrue(os.access(installed, os.X_OK))
            self.assertEqual(installed.read_bytes(), built.read_bytes())
            help_text = (d / "usr" / "share" / "doc" / "event-server" / f"{daemon}.txt").read_text()
            self.assertEqual(help_text, run([built, "--help"], check=True).stdout)
        unitdir = d / "usr" / "lib" / "systemd" / "system"
        for name in UNITS:
            text = (unitdir / name).read_text()
            self.assertNotIn("@bindir@", text)
            self.assertEqual(stat.S_IMODE((unitdir / name).stat().st_mode), 0o644)
            for line in text.splitlines():
                if line.startswith("ExecStart="):
                    self.assertRegex(line, r"^ExecStart=/usr/bin/event-(listen|broadcast)( |$)")
        self.assertEqual((d / "etc" / "event-server" / "event-server.env.sample").read_text(),
                         (UNIT_DIR / "event-server.env.sample").read_text())
        self.assertFalse((d / "etc" / "event-server" / "event-server.env").exists())
        self.assertEqual((d / "usr" / "lib" / "sysusers.d" / "event-server.conf").read_text(),
                         (UNIT_DIR / "event-server.sysusers").read_text())
        self.assertEqual((d / "usr" / "share" / "doc" / "event-server" / "event-server-redis.conf").read_text(),
                         REDIS_DROP_IN.read_text())
        # Nothing outside the staging folder's usr/ and etc/, nothing enabled.
        self.assertEqual(sorted(p.name for p in d.iterdir()), ["etc", "usr"])
        self.assertFalse((d / "etc" / "systemd").exists())
        self.assertIn("systemctl enable", out)

    def test_redis_variant_enables_without_the_bus_socket(self):
        """The commands scripts/install prints for the Redis engine, on the
        installed tree (systemctl --root needs no running manager)."""
        self.assertIsNotNone(shutil.which("systemctl"), "systemctl is missing (Debian package systemd)")
        out = self.install("/usr")
        for command in ("systemctl mask event-broadcast.socket",
                        "systemctl enable --now event-broadcast.service event-listen.service",
                        "/usr/share/doc/event-server/event-server-redis.conf /etc/systemd/system/$unit.d/redis.conf"):
            self.assertIn(command, out)
        etc = self.dest / "etc" / "systemd" / "system"
        variants = {"one": (["event-broadcast.socket"], ["event-broadcast.service", "event-listen.service"]),
                    "instances": (["event-broadcast@.socket"],
                                  ["event-broadcast@a.service", "event-broadcast@b.service", "event-listen.service"])}
        for variant, (masked, services) in variants.items():
            with self.subTest(variant=variant):
                shutil.rmtree(etc, ignore_errors=True)
                root = f"--root={self.dest}"
                result = run(["systemctl", root, "mask", *masked])
                self.assertEqual(result.returncode, 0, result.stderr)
                result = run(["systemctl", root, "enable", *services])
                self.assertEqual(result.returncode, 0, result.stderr)
                for unit in masked:
                    self.assertEqual(os.readlink(etc / unit), "/dev/null")
                wants = sorted(p.name for p in (etc / "multi-user.target.wants").iterdir())
                self.assertEqual(wants, sorted(services))
                self.assertFalse((etc / "sockets.target.wants").exists(), "a bus socket was enabled")
                socket = "event-broadcast@a.socket" if variant == "instances" else "event-broadcast.socket"
                state = run(["systemctl", root, "is-enabled", socket]).stdout.strip()
                self.assertEqual(state, "masked")

    def test_other_prefix_puts_units_under_etc(self):
        self.install("/opt/event-server")
        d = self.dest
        self.assertTrue((d / "opt" / "event-server" / "bin" / "event-listen").is_file())
        unit = (d / "etc" / "systemd" / "system" / "event-listen.service").read_text()
        self.assertIn("ExecStart=/opt/event-server/bin/event-listen\n", unit)
        self.assertTrue((d / "etc" / "sysusers.d" / "event-server.conf").is_file())


def shell_scripts():
    """Every shell script of the project: scripts/*, .ci/run and docker/ by shebang."""
    found = []
    for folder in (ROOT / "scripts", ROOT / ".ci", ROOT / "docker"):
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            with open(path, "rb") as f:
                first = f.readline()
            if re.match(rb"#!\s*(/usr/bin/env\s+)?(/bin/|/usr/bin/)?(ba)?sh\b", first):
                found.append(path)
    return found


class ShellScripts(unittest.TestCase):
    def test_shellcheck(self):
        self.assertIsNotNone(shutil.which("shellcheck"), "shellcheck is missing (Debian package shellcheck)")
        scripts = shell_scripts()
        names = {p.relative_to(ROOT).as_posix() for p in scripts}
        for expected in ("scripts/install", "scripts/build", "scripts/test", ".ci/run", "docker/healthcheck"):
            self.assertIn(expected, names)
        result = run(["shellcheck", "--external-sources", *scripts], cwd=ROOT)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


def dockerfile_stages(text):
    """[(base, name, [(instruction, arguments)])] with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stages = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", args.strip(), re.I)
            stages.append((m.group(1), m.group(2), []))
        elif stages:
            stages[-1][2].append((instruction, args.strip()))
    return stages


class DockerFiles(unittest.TestCase):
    def setUp(self):
        self.text = (ROOT / "docker" / "Dockerfile").read_text()
        self.stages = dockerfile_stages(self.text)

    def test_dockerfile_shape(self):
        self.assertGreaterEqual(len(self.stages), 2, "multi-stage")
        self.assertEqual(self.stages[0][0], "debian:12")
        self.assertEqual(self.stages[0][1], "build")
        base, _, final = self.stages[-1]
        self.assertEqual(base, "debian:12-slim")
        users = [args for ins, args in final if ins == "USER"]
        self.assertTrue(users, "the final stage sets USER")
        self.assertNotIn(users[-1].split(":")[0], ("root", "0"))
        self.assertTrue(any(ins == "HEALTHCHECK" and "CMD" in args for ins, args in final))
        exposed = " ".join(args for ins, args in final if ins == "EXPOSE").split()
        self.assertEqual(sorted(exposed), ["8080", "8081"])
        copied = " ".join(args for ins, args in final if ins == "COPY")
        for daemon in ("event-listen", "event-broadcast"):
            self.assertIn(daemon, copied)
        final_runs = " ".join(args for ins, args in final if ins == "RUN")
        self.assertNotRegex(final_runs, r"-dev\b", "no -dev package in the runtime image")
        for _, _, instructions in self.stages:
            for ins, args in instructions:
                if ins == "ADD":
                    self.assertNotRegex(args, r"(?i)\b(https?|ftp|git)://", "ADD of a remote URL")

    def test_copy_sources_are_in_the_context(self):
        ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
        self.assertEqual(ignore[0], "*", ".dockerignore is an allow list")
        allowed = {line[1:].rstrip("/") for line in ignore[1:] if line.startswith("!")}
        for _, _, instructions in self.stages:
            for ins, args in instructions:
                if ins != "COPY" or args.startswith("--from"):
                    continue
                for source in args.split()[:-1]:
                    with self.subTest(source=source):
                        self.assertTrue((ROOT / source).exists(), f"COPY {source}: not in the repository")
                        self.assertIn(source.rstrip("/"), allowed, f"COPY {source}: excluded by .dockerignore")

    def test_build_stage_builds_and_runtime_packages_cover_the_libraries(self):
        """Runs the build stage's cmake and library check on exactly the files it copies."""
        build = self.stages[0][2]
        work = Path(tempfile.mkdtemp(prefix="evs-docker-"))
        self.addCleanup(shutil.rmtree, work, True)
        src, out = work / "src", work / "out"
        src.mkdir()
        for ins, args in build:
            if ins == "COPY":
                *sources, dest = args.split()
                for source in sources:
                    target = src / (Path(source).name if dest in ("./", ".") else dest)
                    if (ROOT / source).is_dir():
                        shutil.copytree(ROOT / source, target)
                    else:
                        shutil.copy2(ROOT / source, target)
        runs = [args for ins, args in build if ins == "RUN" and "apt-get" not in args]
        self.assertEqual(len(runs), 2, "a cmake RUN and a library-check RUN")
        packages = re.search(r'ARG RUNTIME_PACKAGES="([^"]+)"', self.text).group(1)
        env = {k: v for k, v in os.environ.items() if k not in ("CC", "CFLAGS", "LDFLAGS")}
        env["RUNTIME_PACKAGES"] = packages
        for script in runs:
            result = run(["/bin/sh", "-c", script.replace("/out", str(out))], cwd=src, env=env, timeout=900)
            self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-3000:])
        for daemon in ("event-listen", "event-broadcast"):
            self.assertTrue((out / "usr" / "local" / "bin" / daemon).is_file())
        # The runtime stage installs exactly that list (plus curl for the health check).
        final_runs = " ".join(args for ins, args in self.stages[-1][2] if ins == "RUN")
        self.assertIn("$RUNTIME_PACKAGES curl", final_runs)

    def test_healthcheck_script_is_copied(self):
        self.assertIn("COPY docker/healthcheck /usr/local/bin/event-server-healthcheck", self.text)
        self.assertIn('CMD ["/usr/local/bin/event-server-healthcheck"]', self.text)

    def test_compose_files(self):
        compose = shutil.which("docker-compose")
        if compose is None:
            self.skipTest("docker-compose is missing (Debian package docker-compose): compose files not checked")
        expectations = {
            "docker-compose.yml": ({"11000": "8080", "11001": "8081"}, "true"),
            "docker-compose.dev.yml": ({"12000": "8080", "12001": "8081"}, "false"),
        }
        for name, (ports, https) in expectations.items():
            with self.subTest(file=name):
                result = run([compose, "-f", ROOT / "docker" / name, "config"], cwd=ROOT,
                             env=dict(os.environ, EVS_TOKENS_DIR="/srv/tokens", EVS_CERTS_DIR="/srv/certs"))
                self.assertEqual(result.returncode, 0, result.stderr)
                config = result.stdout
                for published, target in ports.items():
                    self.assertRegex(config, rf"published: {published}\n\s+target: {target}")
                self.assertEqual(len(re.findall(rf"HTTPS_ENABLE: ['\"]?{https}['\"]?", config)), 2)
                self.assertEqual(config.count("restart: unless-stopped"), 2)
                self.assertEqual(config.count("bus:/run/event-server:rw"), 2)
                self.assertEqual(config.count("/srv/tokens:/tokens:ro"), 2)
                if https == "true":
                    self.assertEqual(config.count("/srv/certs:/certs:ro"), 2)
                self.assertIn("- event-listen", config)
                self.assertIn("- event-broadcast", config)

    def test_redis_dockerfile_shape(self):
        stages = dockerfile_stages((ROOT / "docker" / "Dockerfile.redis").read_text())
        self.assertEqual(len(stages), 1)
        base, _, instructions = stages[0]
        self.assertEqual(base, "debian:12-slim", "Debian's redis-server, as the project uses")
        runs = " ".join(args for ins, args in instructions if ins == "RUN")
        self.assertRegex(runs, r"apt-get install .*\bredis-server\b")
        users = [args for ins, args in instructions if ins == "USER"]
        self.assertEqual(users, ["10001:10001"], "the daemons' image user, not root")
        self.assertIn('["/data"]', [args for ins, args in instructions if ins == "VOLUME"])
        for ins, args in instructions:
            self.assertNotIn(ins, ("ADD", "COPY"), "the Redis image takes no file of the context")


def cluster_config(test):
    """docker-compose.cluster.yml as `docker-compose config` resolves it (a dict)."""
    compose = shutil.which("docker-compose")
    if compose is None:
        test.skipTest("docker-compose is missing (Debian package docker-compose): compose file not checked")
    import yaml  # python3-yaml, a dependency of Debian's docker-compose
    env = dict(os.environ, EVS_TOKENS_DIR="/srv/tokens", EVS_CERTS_DIR="/srv/certs",
               EVS_REDIS_PASSWORD_FILE="/srv/secrets/redis.password")
    result = run([compose, "-f", ROOT / "docker" / "docker-compose.cluster.yml", "config"], cwd=ROOT, env=env)
    test.assertEqual(result.returncode, 0, result.stderr)
    return yaml.safe_load(result.stdout)


def compose_text(value):
    """A string of `docker-compose config` output as the container gets it ($$ is $)."""
    return value.replace("$$", "$")


class ClusterCompose(unittest.TestCase):
    SECRET = "/run/secrets/redis_password"

    def test_services_share_one_redis_with_the_password_in_a_secret(self):
        config = cluster_config(self)
        services = config["services"]
        self.assertEqual(sorted(services), ["broadcast-1", "broadcast-2", "listen-1", "listen-2", "redis"])
        self.assertEqual(config["secrets"], {"redis_password": {"file": "/srv/secrets/redis.password"}})
        published = {}
        for name, service in services.items():
            with self.subTest(service=name):
                env = service.get("environment", {})
                for key in env:
                    self.assertFalse("PASSWORD" in key and not key.endswith("_FILE"),
                                     f"{name}: a password in the environment ({key})")
                self.assertEqual([s["source"] for s in service["secrets"]], ["redis_password"])
                self.assertEqual(service["restart"], "unless-stopped")
                self.assertIs(service["read_only"], True)
                self.assertEqual(service["cap_drop"], ["ALL"])
                self.assertIn("no-new-privileges:true", service["security_opt"])
                for port in service.get("ports", []):
                    published[str(port["published"])] = (name, str(port["target"]))
                if name == "redis":
                    continue
                daemon = "event-broadcast" if name.startswith("broadcast") else "event-listen"
                self.assertEqual(service["command"], [daemon])
                self.assertEqual(service["image"], "event-server:latest")
                self.assertEqual(service["build"]["dockerfile"], "docker/Dockerfile")
                self.assertEqual(env["REDIS_URL"], "redis://redis:6379")
                self.assertEqual(env["REDIS_PASSWORD_FILE"], self.SECRET)
                self.assertNotIn("BUS_SOCKET", env)
                self.assertEqual(env["HTTPS_ENABLE"], "true")
                self.assertIn("redis", service["depends_on"])
                self.assertIn("/srv/tokens:/tokens:ro", service["volumes"])
                self.assertIn("/srv/certs:/certs:ro", service["volumes"])
        # Redis publishes no port: only the services reach it.
        self.assertEqual(published, {"13000": ("listen-1", "8080"), "13001": ("broadcast-1", "8081"),
                                     "13002": ("listen-2", "8080"), "13003": ("broadcast-2", "8081")})
        redis = services["redis"]
        self.assertEqual(redis["build"]["dockerfile"], "docker/Dockerfile.redis")
        self.assertEqual(redis["command"][:2], ["sh", "-c"])
        conf = compose_text(redis["command"][2]).splitlines()
        self.assertEqual(conf[0], "exec redis-server - <<EOF")
        for line in ("port 6379", "dir /data", "appendonly yes", f"requirepass $(cat {self.SECRET})"):
            self.assertIn(line, conf)
        self.assertIn("redis-data:/data:rw", redis["volumes"])
        health = compose_text(redis["healthcheck"]["test"][1])
        self.assertIn(f"REDISCLI_AUTH=\"$(cat {self.SECRET})\" redis-cli ping", health)

    def test_redis_configuration_runs_with_the_password_out_of_sight(self):
        """The compose file's Redis command and health check on Debian's
        redis-server here, on a UNIX socket in a temporary folder instead of
        port 6379 and with the secret and /data moved there."""
        self.assertTrue(os.access("/usr/bin/redis-server", os.X_OK), "redis-server is missing (scripts/deps)")
        config = cluster_config(self)
        redis = config["services"]["redis"]
        work = Path(tempfile.mkdtemp(prefix="evs-redis-"))
        self.addCleanup(shutil.rmtree, work, True)
        secret, sock, data = work / "redis_password", work / "redis.sock", work / "data"
        data.mkdir()
        password = "cluster-test-" + os.urandom(8).hex()
        secret.write_text(password + "\n")
        secret.chmod(0o400)

        def local(text):
            return compose_text(text).replace(self.SECRET, str(secret))

        script = local(redis["command"][2]).replace("dir /data", f"dir {data}")
        self.assertIn("port 6379\n", script)
        script = script.replace("port 6379\n", f"port 0\nunixsocket {sock}\nunixsocketperm 700\n")
        env = dict(os.environ, PATH="/usr/bin:/bin")
        log = open(work / "redis.log", "w+")
        self.addCleanup(log.close)
        proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        self.addCleanup(stop)
        cli = ["/usr/bin/redis-cli", "-s", sock]
        authed = dict(env, REDISCLI_AUTH=password)
        deadline = time.monotonic() + 10
        while run(cli + ["ping"], env=authed).stdout.strip() != "PONG":
            if proc.poll() is not None:
                self.fail("redis-server exited: " + (work / "redis.log").read_text())
            self.assertLess(time.monotonic(), deadline, "redis-server does not answer after 10 s")
            time.sleep(0.05)
        self.assertIn("NOAUTH", run(cli + ["ping"], env=env).stdout)
        self.assertEqual(run(cli + ["config", "get", "appendonly"], env=authed).stdout.split(), ["appendonly", "yes"])
        # sh exec'd redis-server (so it is PID 1 in the container), which took
        # the password from stdin: not in its command line or environment.
        self.assertEqual(Path(f"/proc/{proc.pid}/comm").read_text().strip(), "redis-server")
        for view in ("cmdline", "environ"):
            self.assertNotIn(password.encode(), Path(f"/proc/{proc.pid}/{view}").read_bytes(), view)
        health = local(redis["healthcheck"]["test"][1]).replace("redis-cli ", f"redis-cli -s {sock} ")
        self.assertEqual(run(["sh", "-c", health], env=env).returncode, 0, "health check fails")
        proc.terminate()
        self.assertEqual(proc.wait(timeout=10), 0)
        self.assertTrue(any((data / "appendonlydir").iterdir()), "no append-only file in the data folder")


if __name__ == "__main__":
    unittest.main(verbosity=2)
