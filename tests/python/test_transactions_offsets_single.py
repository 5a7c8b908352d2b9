"""Offsets sent with a transaction on a single broker without a metadata quorum: there is no
`__consumer_offsets` topic, so the group coordinator keeps the pending offsets in its own
store (tree `group_txn_offsets`) and the transaction coordinator hands it the markers. The
same checks as on the replicated offsets topic (test_transactions_read.py)."""

from test_transactions_read import check_offsets_with_transactions


def test_offsets_sent_with_a_transaction_on_a_single_broker(cluster):
    check_offsets_with_transactions(cluster)
