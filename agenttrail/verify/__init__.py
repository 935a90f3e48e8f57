"""Prove the record: recompute every hash chain, reconcile checkpoints, name what is wrong.

Example:
    >>> report = check_chains(store)            # doctest: +SKIP
    >>> [f.line() for f in report.findings]     # doctest: +SKIP
"""

from agenttrail.verify._engine import DEFAULT_MAX_FINDINGS, check_chains
from agenttrail.verify._findings import Finding, FindingKind, ProducerReconciliation, VerifyReport
from agenttrail.verify._records import expected_hash, record_to_row, row_to_record
from agenttrail.verify._verify import verify_store

__all__ = [
    "DEFAULT_MAX_FINDINGS",
    "Finding",
    "FindingKind",
    "ProducerReconciliation",
    "VerifyReport",
    "check_chains",
    "expected_hash",
    "record_to_row",
    "row_to_record",
    "verify_store",
]
