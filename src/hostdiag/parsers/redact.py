"""Redaction of secrets in command lines, before anything leaves the parser.

The rules, with examples, are in ``docs/redaction.md``; ``tests/test_processes.py``
holds them as a table. In short, an argument list is walked once and

* ``--NAME=VALUE``, ``-NAME=VALUE``, ``-DNAME=VALUE`` (Java properties) and
  env-style ``NAME=VALUE`` become ``...NAME=***`` when NAME is a secret name;
* ``--NAME`` / ``-NAME`` without ``=`` and with a secret NAME makes the next
  argument ``***``, whatever it looks like;
* ``NAME: VALUE`` (an HTTP header, as given to ``curl -H``) becomes
  ``NAME: ***`` for Authorization, Proxy-Authorization and secret names;
* an argument holding white space (``sh -c "..."``, a title the process
  rewrote into one string) is redacted word by word by the rules above;
* in what is left, URL credentials ``scheme://user:password@host`` become
  ``scheme://user:***@host``, and a ``NAME=VALUE`` after ``?``, ``&`` or ``;``
  (query strings) with a secret NAME loses its VALUE up to the next ``&``,
  ``;`` or white space.

A secret name is cut into words at ``-``, ``_``, ``.``, digits and camelCase
humps (``keyStorePassword`` → key, store, password; ``DBPassword`` → db,
password); it is secret when one of its words is pass, password, passwd, pwd,
passphrase, token, secret, auth, credential or cookie (or a plural), or when it
holds api key, access key or private key (as two words or one).
"""

import re

MASK = "***"

_SECRET_WORDS = frozenset(
    word + plural
    for word in ("pass", "password", "passwd", "pwd", "passphrase", "token", "secret",
                 "auth", "credential", "cookie", "apikey", "accesskey", "privatekey")
    for plural in ("", "s", "es")
    if not (plural == "es" and not word.endswith("s"))
)
_SECRET_PAIRS = frozenset(("api", "access", "private"))
_KEY_WORDS = frozenset(("key", "keys"))
_SECRET_HEADERS = frozenset(("authorization", "proxy-authorization"))

# Words of a name: an upper-case run not followed by lower case (DB in
# DBPassword), a capitalised or lower-case word, a run of digits.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_OPTION = re.compile(r"(-{1,2})([A-Za-z0-9_][A-Za-z0-9_.-]*)(=.*)?\Z", re.S)
_ENV = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=", re.S)
_HEADER = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]*\S", re.S)
_INNER_PAIR = re.compile(r"(?<=[?&;])([A-Za-z_][A-Za-z0-9_.-]*)=([^\s&;]*)")
_SPACE = re.compile(r"(\s+)")
# Every rule needs one of these in the argument (a secret word, a secret header
# name, URL credentials): an argument without any is returned as it is.
_CANDIDATE = re.compile(r"pass|pwd|token|secret|key|auth|credential|cookie|://", re.I)
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):([^/\s]*)@")


def secret_name(name):
    """True when ``name`` (an option, variable or parameter name) names a secret."""
    words = [w.lower() for w in _WORD.findall(name)]
    for i, word in enumerate(words):
        if word in _SECRET_WORDS:
            return True
        if word in _SECRET_PAIRS and i + 1 < len(words) and words[i + 1] in _KEY_WORDS:
            return True
    return False


def _option_name_is_secret(dashes, name):
    # -Dkey=value is a Java system property: the name is what follows the D.
    return secret_name(name) or (
        dashes == "-" and name[:1] == "D" and len(name) > 1 and secret_name(name[1:]))


def _inner_pair(match):
    if secret_name(match.group(1)):
        return match.group(1) + "=" + MASK
    return match.group(0)


def redact_arg(arg):
    """``(redacted argument, whether the next argument is a secret value)``."""
    if not _CANDIDATE.search(arg):
        return arg, False
    match = _OPTION.match(arg)
    if match and _option_name_is_secret(match.group(1), match.group(2)):
        if match.group(3) is None:
            return arg, True
        return match.group(1) + match.group(2) + "=" + MASK, False
    if not match:
        match = _ENV.match(arg)
        if match and secret_name(match.group(1)):
            return match.group(1) + "=" + MASK, False
        match = _HEADER.match(arg)
        if match and (match.group(1).lower() in _SECRET_HEADERS or secret_name(match.group(1))):
            return match.group(1) + ": " + MASK, False
    if _SPACE.search(arg):
        # A command line in one argument (sh -c "...", a rewritten title):
        # its words are redacted as arguments, its white space kept.
        parts = _SPACE.split(arg)
        parts[::2] = redact_argv(parts[::2])
        return "".join(parts), False
    if "://" in arg:
        arg = _URL_USERINFO.sub(r"\1:" + MASK + "@", arg)
    if "=" in arg:
        arg = _INNER_PAIR.sub(_inner_pair, arg)
    return arg, False


def redact_argv(argv):
    """The argument list with secret values replaced by :data:`MASK`."""
    out = []
    secret_next = False
    for arg in argv:
        if secret_next:
            out.append(MASK)
            secret_next = False
            continue
        arg, secret_next = redact_arg(arg)
        out.append(arg)
    return out
