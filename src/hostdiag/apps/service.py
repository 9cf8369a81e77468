"""`diag service install|uninstall`: the agent as a systemd service without a package.

install writes, each step only when it is not already done (a second run
changes nothing and says so):

* the system user and group ``hostdiag`` (``useradd --system``; with
  ``--root DIR``, ``useradd --prefix DIR`` writes DIR/etc/passwd);
* /var/lib/hostdiag (0750) and /run/hostdiag (0750) owned by it, and
  /etc/hostdiag (0750, root:hostdiag): systemd's StateDirectory=,
  RuntimeDirectory= and ConfigurationDirectory= make them too, but the agent
  run by hand needs them first;
* /etc/hostdiag/agent.toml, every setting commented out with its default
  (kept when it exists: it is the administrator's file);
* /etc/systemd/system/hostdiag-agent.service, the packaged unit with
  ExecStart naming the diag that runs this command (or ``--diag PATH``).

It never starts anything: it prints the systemctl command, and says when
systemd is not the init system. ``--dry-run`` prints each step and does none.
uninstall removes the unit and the runtime directory; ``--purge`` also
removes the state, the settings and the user.
"""

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig

from hostdiag.apps.common import ArgumentParser, CommandFailed, run_command

USER = "hostdiag"
UNIT_NAME = "hostdiag-agent.service"
UNIT_DIR = "etc/systemd/system"
STATE_DIR = "var/lib/hostdiag"
RUNTIME_DIR = "run/hostdiag"
CONFIG_DIR = "etc/hostdiag"
CONFIG_FILE = "etc/hostdiag/agent.toml"
# The unit hides these from the service (ProtectHome=, PrivateTmp=): a diag
# below them could not be started by it.
HIDDEN_PREFIXES = ("/root/", "/home/", "/run/user/", "/tmp/", "/var/tmp/")
# The unit and the commented settings file, shipped in the package (links to
# systemd/ in the repository; the Debian package installs the same two files).
_HERE = os.path.dirname(os.path.abspath(__file__))
UNIT_TEMPLATE = os.path.join(_HERE, "hostdiag-agent.service")
CONFIG_TEMPLATE = os.path.join(_HERE, "agent.toml")


class ServiceError(CommandFailed):
    """A step that cannot be done; the message is one line (exit 1)."""


def build_parser(parser=None):
    parser = parser or ArgumentParser(prog="diag service")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, summary in (("install", "install the agent as a systemd service"),
                          ("uninstall", "remove the service (with --purge: its data and user)")):
        action = sub.add_parser(name, help=summary)
        action.add_argument("--dry-run", action="store_true", help="print each step, do none")
        action.add_argument("--root", default="/", metavar="DIR",
                            help="install into DIR instead of / (an image, a test)")
        if name == "install":
            action.add_argument("--diag", metavar="PATH",
                                help="the diag the unit starts (default: the one running)")
        else:
            action.add_argument("--purge", action="store_true",
                                help="also remove /var/lib/hostdiag, /etc/hostdiag and the user")
    return parser


def installed_diag(argv0=None):
    """The absolute path of the installed ``diag`` console script: the one
    being run, else the one in this interpreter's scripts directory, else the
    first on $PATH; None when there is none."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    candidates = []
    if os.path.basename(argv0) == "diag":
        candidates.append(os.path.abspath(argv0))
    candidates.append(os.path.join(sysconfig.get_path("scripts"), "diag"))
    on_path = shutil.which("diag")
    if on_path:
        candidates.append(os.path.abspath(on_path))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def render_unit(template, diag):
    """The unit text with ExecStart= naming ``diag`` (an absolute path)."""
    lines = []
    for line in template.splitlines():
        if line.startswith("ExecStart="):
            command = line[len("ExecStart="):].split(" ", 1)
            line = "ExecStart=" + " ".join([diag] + command[1:])
        lines.append(line)
    return "\n".join(lines) + "\n"


class Installer:
    """The steps of install and uninstall under one root directory. Each
    step reports what it did (or, with ``dry_run``, would do) to ``out``."""

    def __init__(self, root="/", dry_run=False, out=None):
        self.root = os.path.abspath(root)
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.changes = 0

    def path(self, relative):
        return os.path.join(self.root, relative)

    def say(self, text):
        self.out.write(text + "\n")

    def act(self, text):
        """Report a change; True when it should be made (not a dry run)."""
        self.changes += 1
        self.say(("would " if self.dry_run else "") + text)
        return not self.dry_run

    # user

    def _lookup(self):
        """(uid, gid) of the service user under the root, or None."""
        if self.root == "/":
            try:
                entry = pwd.getpwnam(USER)
            except KeyError:
                return None
            return entry.pw_uid, entry.pw_gid
        try:
            with open(self.path("etc/passwd"), encoding="utf-8") as passwd:
                for line in passwd:
                    fields = line.rstrip("\n").split(":")
                    if len(fields) >= 4 and fields[0] == USER:
                        return int(fields[2]), int(fields[3])
        except FileNotFoundError:
            pass
        return None

    def ensure_user(self):
        if self._lookup() is not None:
            self.say("unchanged: user %s exists" % USER)
            return
        command = ["useradd", "--system", "--user-group", "--no-create-home",
                   "--home-dir", "/" + STATE_DIR, "--shell", "/usr/sbin/nologin",
                   "--comment", "hostdiag agent", USER]
        if self.root != "/":
            command[1:1] = ["--prefix", self.root]
        if self.act("create the system user %s: %s" % (USER, " ".join(command))):
            _run(command)

    def owner(self):
        """(uid, gid) of the user; (0, 0) in a dry run that has not made it."""
        found = self._lookup()
        return found if found is not None else (0, 0)

    # files

    def ensure_dir(self, relative, mode, user_owned):
        path = self.path(relative)
        uid, gid = self.owner()
        want_uid = uid if user_owned else 0
        if os.path.isdir(path):
            st = os.stat(path)
            if (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, want_uid, gid):
                self.say("unchanged: %s" % path)
                return
            if self.act("set %s to mode %04o, owner %d:%d" % (path, mode, want_uid, gid)):
                os.chown(path, want_uid, gid)
                os.chmod(path, mode)
            return
        if self.act("create %s (mode %04o, owner %d:%d)" % (path, mode, want_uid, gid)):
            os.makedirs(path, exist_ok=True)
            os.chown(path, want_uid, gid)
            os.chmod(path, mode)

    def ensure_file(self, relative, text, mode, keep_existing):
        """Write ``text`` unless the file holds it already; an existing file
        is left alone when ``keep_existing`` (the administrator's)."""
        path = self.path(relative)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as current:
                same = current.read() == text
            if same or keep_existing:
                self.say("unchanged: %s%s" % (path, "" if same else " (kept: edited by hand)"))
                return
            verb = "update"
        else:
            verb = "write"
        if self.act("%s %s" % (verb, path)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _, gid = self.owner()
            temporary = path + ".tmp"
            with open(temporary, "w", encoding="utf-8") as out:
                out.write(text)
            os.chown(temporary, 0, gid if relative.startswith(CONFIG_DIR) else 0)
            os.chmod(temporary, mode)
            os.replace(temporary, path)

    def remove(self, relative):
        path = self.path(relative)
        if not os.path.lexists(path):
            self.say("unchanged: %s is absent" % path)
            return
        if self.act("remove %s" % path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def remove_user(self):
        if self._lookup() is None:
            self.say("unchanged: user %s is absent" % USER)
            return
        command = ["userdel", USER]
        if self.root != "/":
            command[1:1] = ["--prefix", self.root]
        if self.act("remove the user %s: %s" % (USER, " ".join(command))):
            _run(command)

    # the two commands

    def install(self, diag):
        with open(UNIT_TEMPLATE, encoding="utf-8") as template:
            unit = render_unit(template.read(), diag)
        self.ensure_user()
        self.ensure_dir(STATE_DIR, 0o750, user_owned=True)
        self.ensure_dir(RUNTIME_DIR, 0o750, user_owned=True)
        self.ensure_dir(CONFIG_DIR, 0o750, user_owned=False)
        with open(CONFIG_TEMPLATE, encoding="utf-8") as template:
            settings = template.read()
        self.ensure_file(CONFIG_FILE, settings, 0o640, keep_existing=True)
        self.ensure_file(os.path.join(UNIT_DIR, UNIT_NAME), unit, 0o644, keep_existing=False)

    def uninstall(self, purge):
        self.remove(os.path.join(UNIT_DIR, UNIT_NAME))
        self.remove(RUNTIME_DIR)
        if purge:
            self.remove(STATE_DIR)
            self.remove(CONFIG_DIR)
            self.remove_user()


def _run(command):
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except OSError as exc:
        raise ServiceError("%s: %s" % (command[0], exc.strerror or exc)) from None
    if done.returncode:
        raise ServiceError("%s failed: %s" % (" ".join(command),
                                               done.stdout.decode("utf-8", "replace").strip()))


def systemd_running():
    """True when systemd is the init system (sd_booted(3)'s test)."""
    return os.path.isdir("/run/systemd/system")


def resolve_diag(given):
    diag = os.path.abspath(given) if given else installed_diag()
    if diag is None:
        raise ServiceError("cannot find the installed diag; give its path with --diag PATH")
    if not (os.path.isfile(diag) and os.access(diag, os.X_OK)):
        raise ServiceError("%s is not an executable file" % diag)
    if diag.startswith(HIDDEN_PREFIXES):
        raise ServiceError("%s is below a directory the unit hides from the service "
                           "(ProtectHome=, PrivateTmp=): install hostdiag system-wide "
                           "(the .deb, or pip as root into /usr/local) or give --diag PATH" % diag)
    return diag


def run(args, out=None):
    """Carry out the parsed ``args``; returns the exit status."""
    out = out or sys.stdout
    if os.geteuid() != 0 and not args.dry_run:
        raise ServiceError("must run as root (or use --dry-run)")
    installer = Installer(args.root, args.dry_run, out)
    if args.action == "install":
        installer.install(resolve_diag(args.diag))
    else:
        installer.uninstall(args.purge)
    if not installer.changes:
        installer.say("nothing to do: already %s" % ("installed" if args.action == "install" else "removed"))
    if args.root == "/" or os.path.abspath(args.root) == "/":
        if args.action == "install":
            next_step = "systemctl daemon-reload && systemctl enable --now hostdiag-agent"
        else:
            next_step = "systemctl disable --now hostdiag-agent; systemctl daemon-reload"
        installer.say("next: %s" % next_step)
        if not systemd_running():
            installer.say("note: systemd is not the init system here (no /run/systemd/system); "
                          "the unit takes effect on a host booted with systemd")
    return 0


def main_service(argv=None):
    def body():
        args = build_parser().parse_args(argv)
        try:
            return run(args)
        except OSError as exc:
            raise CommandFailed("%s%s" % (exc.strerror or exc, ": %s" % exc.filename if exc.filename else "")) \
                from None

    return run_command("diag service", body)


if __name__ == "__main__":
    sys.exit(main_service())
