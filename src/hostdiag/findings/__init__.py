"""Findings: rules that name what is wrong, with the culprit, the evidence and the threshold."""

from hostdiag.findings.rules import evaluate  # noqa: F401
from hostdiag.findings.rules import filesystem_usage  # noqa: F401
from hostdiag.findings.rules import connection_rankings  # noqa: F401
from hostdiag.findings.rules import culprit_text  # noqa: F401
from hostdiag.findings.rules import socket_inodes_named  # noqa: F401
