"""Dedup claims in DynamoDB: one conditional PutItem per claim.

The AWS function's powertools idempotency uses the same table (TRUSTWATCH_STATE_TABLE).
Both coexist by sharing its key schema and TTL attribute:

- partition key `id` (string, powertools' default `key_attr`); our items are
  `dedup#<finding id>`, powertools' are `<function>.<handler>#<hash>`, so they never meet;
- TTL attribute `expires` (epoch seconds): enable the table's TTL on `expires` and give
  powertools `DynamoDBPersistenceLayer(..., expiry_attr="expires")`, so one TTL setting
  cleans up both. Expired items may linger until TTL runs; a claim treats them as free.

Sweep states live in the same table, under `sweep#` keys (`DynamoSweepStore`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trustwatch.stores.common import CLAIM_ROUNDS, STORE_ATTEMPTS, claim_token, now_or_clock
from trustwatch.sweepstate import (
    SweepState,
    SweepStateConflict,
    decode_state,
    encode_state,
    state_key,
)

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


# --- sweep state ---------------------------------------------------------------------------

SWEEP_PREFIX = "sweep#"
# DynamoDB items are at most 400 KB, names and values together: a state larger than this
# (gzip'd) goes into parts, each its own item.
SWEEP_PART_BYTES = 350_000


class DynamoSweepStore:
    """Sweep states in the dedup table: the item `sweep#<cloud>#<unit>` (trustwatch.sweepstate).

    The item holds a `version` number, written only if it is still the one loaded
    (a condition expression), and the gzip'd state: inline when it fits an item, else in
    part items `sweep#<cloud>#<unit>#<write token>#<n>` written first, which the item then
    names. A reader that finds a part gone (replaced meanwhile) reads the item again; the
    replaced parts are deleted after the new item is written. None of them expires.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        client_kwargs: Mapping[str, Any] | None = None,
        attempts: int = STORE_ATTEMPTS,
        key_attribute: str = "id",
        part_bytes: int = SWEEP_PART_BYTES,
    ) -> None:
        self.table_name = table_name
        self.key_attribute = key_attribute
        self.part_bytes = part_bytes
        self._claims = DynamoDedupStore(
            table_name, client=client, client_kwargs=client_kwargs, attempts=attempts
        )

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client (the dedup store's construction and retries)."""
        return self._claims.client

    def _key(self, name: str) -> dict[str, dict[str, str]]:
        return {self.key_attribute: {"S": name}}

    def load(self, cloud: str, unit: str) -> SweepState | None:
        """See `SweepStateStore.load`."""
        head = SWEEP_PREFIX + state_key(cloud, unit)
        for _round in range(CLAIM_ROUNDS):
            item = self.client.get_item(
                TableName=self.table_name, Key=self._key(head), ConsistentRead=True
            ).get("Item")
            if item is None:
                return None
            version = item["version"]["N"]
            if "data" in item:
                return decode_state(item["data"]["B"], version)
            data = self._read_parts(head, item["token"]["S"], int(item["parts"]["N"]))
            if data is not None:
                return decode_state(data, version)
        raise SweepStateConflict(f"sweep state of {head} kept changing while read")

    def _read_parts(self, head: str, token: str, parts: int) -> bytes | None:
        chunks = []
        for index in range(parts):
            part = self.client.get_item(
                TableName=self.table_name,
                Key=self._key(f"{head}#{token}#{index}"),
                ConsistentRead=True,
            ).get("Item")
            if part is None:
                return None  # replaced while we read: read the new item
            chunks.append(part["data"]["B"])
        return b"".join(chunks)

    def save(self, cloud: str, unit: str, state: SweepState, *, expected: str | None) -> str:
        """See `SweepStateStore.save`: parts first, then one conditional PutItem."""
        from botocore.exceptions import ClientError

        head = SWEEP_PREFIX + state_key(cloud, unit)
        data = encode_state(state)
        version = 1 if expected is None else int(expected) + 1
        item: dict[str, Any] = {**self._key(head), "version": {"N": str(version)}}
        token, chunks = "", list[bytes]()
        if len(data) <= self.part_bytes:
            item["data"] = {"B": data}
        else:
            token = claim_token()
            chunks = [data[i : i + self.part_bytes] for i in range(0, len(data), self.part_bytes)]
            for index, chunk in enumerate(chunks):
                self.client.put_item(
                    TableName=self.table_name,
                    Item={**self._key(f"{head}#{token}#{index}"), "data": {"B": chunk}},
                )
            item |= {"token": {"S": token}, "parts": {"N": str(len(chunks))}}
        if expected is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(#key)"}
            condition["ExpressionAttributeNames"] = {"#key": self.key_attribute}
        else:
            condition = {
                "ConditionExpression": "#version = :expected",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(int(expected))}},
            }
        try:
            old = self.client.put_item(
                TableName=self.table_name, Item=item, ReturnValues="ALL_OLD", **condition
            ).get("Attributes", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            if token:
                self._delete_parts(head, token, len(chunks))
            raise SweepStateConflict(f"sweep state of {head} changed since it was loaded") from None
        if "token" in old:
            self._delete_parts(head, old["token"]["S"], int(old["parts"]["N"]))
        return str(version)

    def _delete_parts(self, head: str, token: str, parts: int) -> None:
        for index in range(parts):
            self.client.delete_item(
                TableName=self.table_name, Key=self._key(f"{head}#{token}#{index}")
            )

    def __repr__(self) -> str:
        return f"DynamoSweepStore({self.table_name!r})"


def sweep_store_from_env(environ: Mapping[str, str]) -> DynamoSweepStore | None:
    """The sweep state store in the table TRUSTWATCH_STATE_TABLE names (the dedup one)."""
    table = environ.get("TRUSTWATCH_STATE_TABLE", "").strip()
    return DynamoSweepStore(table) if table else None
