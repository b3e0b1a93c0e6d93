"""Dedup claims in DynamoDB: one conditional PutItem per claim.

The AWS function's powertools idempotency uses the same table (TRUSTWATCH_STATE_TABLE).
Both coexist by sharing its key schema and TTL attribute:

- partition key `id` (string, powertools' default `key_attr`); our items are
  `dedup#<finding id>`, powertools' are `<function>.<handler>#<hash>`, so they never meet;
- TTL attribute `expires` (epoch seconds): enable the table's TTL on `expires` and give
  powertools `DynamoDBPersistenceLayer(..., expiry_attr="expires")`, so one TTL setting
  cleans up both. Expired items may linger until TTL runs; a claim treats them as free.
"""

from __future__ import annotations

import math
from typing import Any

from trustwatch.stores._common import call_with_retry, claim_token, now_or_clock

KEY_PREFIX = "dedup#"

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return isinstance(exc, ConnectionClosedError | EndpointConnectionError | ReadTimeoutError)


class DynamoDedupStore:
    """A DedupStore on a DynamoDB table with partition key `key_attribute` (string)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        key_attribute: str = "id",
        ttl_attribute: str = "expires",
    ) -> None:
        self.table_name = table_name
        self.key_attribute = key_attribute
        self.ttl_attribute = ttl_attribute
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Throttling is retried by call_with_retry, not botocore as well.
            config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)
            self._client = boto3.client("dynamodb", config=config)
        return self._client

    def _key(self, finding_id: str) -> dict[str, dict[str, str]]:
        return {self.key_attribute: {"S": KEY_PREFIX + finding_id}}

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        from botocore.exceptions import ClientError

        now = now_or_clock(now)
        token = claim_token()
        item = {
            **self._key(finding_id),
            # Whole seconds: DynamoDB TTL reads epoch seconds. Rounding up keeps the window.
            self.ttl_attribute: {"N": str(math.ceil(now + window_s))},
            "claim": {"S": token},
        }
        try:
            call_with_retry(
                lambda: self.client.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#key) OR #expires <= :now",
                    ExpressionAttributeNames={
                        "#key": self.key_attribute,
                        "#expires": self.ttl_attribute,
                    },
                    ExpressionAttributeValues={":now": {"N": f"{now:.6f}"}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
                _is_transient,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            held_by = exc.response.get("Item", {}).get("claim", {}).get("S")
            return held_by == token  # our own write, answered late and retried
        return True

    def release(self, finding_id: str) -> None:
        call_with_retry(
            lambda: self.client.delete_item(TableName=self.table_name, Key=self._key(finding_id)),
            _is_transient,
        )

    def __repr__(self) -> str:
        return f"DynamoDedupStore({self.table_name!r})"
