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
from collections.abc import Mapping
from typing import Any

from trustwatch.stores.common import STORE_ATTEMPTS, claim_token, now_or_clock

KEY_PREFIX = "dedup#"


def retry_config(attempts: int = STORE_ATTEMPTS) -> Any:
    """Botocore's `standard` retry mode, `attempts` tries in all (the first included).

    Standard mode retries throttling (ProvisionedThroughputExceededException,
    ThrottlingException, RequestLimitExceeded …), 5xx and connection / read-timeout
    errors with exponential backoff and jitter, under a client-wide retry quota
    (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html).
    A conditional PutItem retried after a lost answer fails its condition; the claim
    token then tells our own write from another instance's.
    """
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=5,
        read_timeout=10,
    )


class DynamoDedupStore:
    """A DedupStore on a DynamoDB table with partition key `key_attribute` (string).

    `client_kwargs` go to `boto3.client("dynamodb", …)` (endpoint, region, credentials);
    a ready `client` is used as given, with its own retry configuration.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        client_kwargs: Mapping[str, Any] | None = None,
        attempts: int = STORE_ATTEMPTS,
        key_attribute: str = "id",
        ttl_attribute: str = "expires",
    ) -> None:
        self.table_name = table_name
        self.key_attribute = key_attribute
        self.ttl_attribute = ttl_attribute
        self._client = client
        self._client_kwargs = dict(client_kwargs or {})
        self._attempts = attempts

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client, created on first use with the retry policy."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "dynamodb", config=retry_config(self._attempts), **self._client_kwargs
            )
        return self._client

    def _key(self, finding_id: str) -> dict[str, dict[str, str]]:
        return {self.key_attribute: {"S": KEY_PREFIX + finding_id}}

    def claim(self, finding_id: str, window_s: int, now: float | None = None) -> bool:
        """Claim `finding_id` until `now + window_s`: True if this call won it."""
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
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(#key) OR #expires <= :now",
                ExpressionAttributeNames={
                    "#key": self.key_attribute,
                    "#expires": self.ttl_attribute,
                },
                ExpressionAttributeValues={":now": {"N": f"{now:.6f}"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            held_by: str | None = exc.response.get("Item", {}).get("claim", {}).get("S")
            return held_by == token  # our own write, answered late and retried
        return True

    def release(self, finding_id: str) -> None:
        """Delete the claim (a missing item is no error)."""
        self.client.delete_item(TableName=self.table_name, Key=self._key(finding_id))

    def __repr__(self) -> str:
        return f"DynamoDedupStore({self.table_name!r})"


# The TRUSTWATCH_STATE_URL forms this store takes: none (it is named by TRUSTWATCH_STATE_TABLE).
URL_FORMS = ""


def store_from_env(environ: Mapping[str, str]) -> DynamoDedupStore | None:
    """The DynamoDB store TRUSTWATCH_STATE_TABLE names (trustwatch.stores asks each cloud)."""
    table = environ.get("TRUSTWATCH_STATE_TABLE", "").strip()
    return DynamoDedupStore(table) if table else None
