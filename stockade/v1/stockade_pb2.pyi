from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Family(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAMILY_UNSPECIFIED: _ClassVar[Family]
    FAMILY_INET: _ClassVar[Family]
    FAMILY_INET6: _ClassVar[Family]

class SetType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SET_TYPE_UNSPECIFIED: _ClassVar[SetType]
    SET_TYPE_HASH_IP: _ClassVar[SetType]
    SET_TYPE_HASH_NET: _ClassVar[SetType]
    SET_TYPE_HASH_IP_PORT: _ClassVar[SetType]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_RETURN: _ClassVar[Action]
    ACTION_DROP: _ClassVar[Action]
    ACTION_JUMP: _ClassVar[Action]
    ACTION_MARK: _ClassVar[Action]
    ACTION_NFLOG: _ClassVar[Action]

class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_ANY: _ClassVar[Protocol]
    PROTOCOL_TCP: _ClassVar[Protocol]
    PROTOCOL_UDP: _ClassVar[Protocol]
    PROTOCOL_SCTP: _ClassVar[Protocol]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_SRC: _ClassVar[Direction]
    DIRECTION_DST: _ClassVar[Direction]

class Physdev(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHYSDEV_ANY: _ClassVar[Physdev]
    PHYSDEV_BRIDGED: _ClassVar[Physdev]
    PHYSDEV_NOT_BRIDGED: _ClassVar[Physdev]
FAMILY_UNSPECIFIED: Family
FAMILY_INET: Family
FAMILY_INET6: Family
SET_TYPE_UNSPECIFIED: SetType
SET_TYPE_HASH_IP: SetType
SET_TYPE_HASH_NET: SetType
SET_TYPE_HASH_IP_PORT: SetType
ACTION_UNSPECIFIED: Action
ACTION_RETURN: Action
ACTION_DROP: Action
ACTION_JUMP: Action
ACTION_MARK: Action
ACTION_NFLOG: Action
PROTOCOL_ANY: Protocol
PROTOCOL_TCP: Protocol
PROTOCOL_UDP: Protocol
PROTOCOL_SCTP: Protocol
DIRECTION_UNSPECIFIED: Direction
DIRECTION_SRC: Direction
DIRECTION_DST: Direction
PHYSDEV_ANY: Physdev
PHYSDEV_BRIDGED: Physdev
PHYSDEV_NOT_BRIDGED: Physdev

class IPSet(_message.Message):
    __slots__ = ("name", "type", "family", "members", "nomatch", "counters", "comment")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NOMATCH_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: SetType
    family: Family
    members: _containers.RepeatedScalarFieldContainer[str]
    nomatch: _containers.RepeatedScalarFieldContainer[str]
    counters: bool
    comment: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[SetType, str]] = ..., family: _Optional[_Union[Family, str]] = ..., members: _Optional[_Iterable[str]] = ..., nomatch: _Optional[_Iterable[str]] = ..., counters: _Optional[bool] = ..., comment: _Optional[str] = ...) -> None: ...

class SetMatch(_message.Message):
    __slots__ = ("set", "dirs", "negate")
    SET_FIELD_NUMBER: _ClassVar[int]
    DIRS_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    set: str
    dirs: _containers.RepeatedScalarFieldContainer[Direction]
    negate: bool
    def __init__(self, set: _Optional[str] = ..., dirs: _Optional[_Iterable[_Union[Direction, str]]] = ..., negate: _Optional[bool] = ...) -> None: ...

class Mark(_message.Message):
    __slots__ = ("value", "mask", "negate")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    value: int
    mask: int
    negate: bool
    def __init__(self, value: _Optional[int] = ..., mask: _Optional[int] = ..., negate: _Optional[bool] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("action", "target", "proto", "dport_first", "dport_last", "sets", "ctstate", "mark", "set_mark", "in_iface", "out_iface", "physdev", "nflog_group", "nflog_prefix", "limit", "comment")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIRST_FIELD_NUMBER: _ClassVar[int]
    DPORT_LAST_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    CTSTATE_FIELD_NUMBER: _ClassVar[int]
    MARK_FIELD_NUMBER: _ClassVar[int]
    SET_MARK_FIELD_NUMBER: _ClassVar[int]
    IN_IFACE_FIELD_NUMBER: _ClassVar[int]
    OUT_IFACE_FIELD_NUMBER: _ClassVar[int]
    PHYSDEV_FIELD_NUMBER: _ClassVar[int]
    NFLOG_GROUP_FIELD_NUMBER: _ClassVar[int]
    NFLOG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    action: Action
    target: str
    proto: Protocol
    dport_first: int
    dport_last: int
    sets: _containers.RepeatedCompositeFieldContainer[SetMatch]
    ctstate: _containers.RepeatedScalarFieldContainer[str]
    mark: Mark
    set_mark: Mark
    in_iface: str
    out_iface: str
    physdev: Physdev
    nflog_group: int
    nflog_prefix: str
    limit: str
    comment: str
    def __init__(self, action: _Optional[_Union[Action, str]] = ..., target: _Optional[str] = ..., proto: _Optional[_Union[Protocol, str]] = ..., dport_first: _Optional[int] = ..., dport_last: _Optional[int] = ..., sets: _Optional[_Iterable[_Union[SetMatch, _Mapping]]] = ..., ctstate: _Optional[_Iterable[str]] = ..., mark: _Optional[_Union[Mark, _Mapping]] = ..., set_mark: _Optional[_Union[Mark, _Mapping]] = ..., in_iface: _Optional[str] = ..., out_iface: _Optional[str] = ..., physdev: _Optional[_Union[Physdev, str]] = ..., nflog_group: _Optional[int] = ..., nflog_prefix: _Optional[str] = ..., limit: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class Chain(_message.Message):
    __slots__ = ("family", "name", "rules")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    family: Family
    name: str
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, family: _Optional[_Union[Family, str]] = ..., name: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class Hook(_message.Message):
    __slots__ = ("builtin", "target", "position")
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    builtin: str
    target: str
    position: int
    def __init__(self, builtin: _Optional[str] = ..., target: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class FamilyHooks(_message.Message):
    __slots__ = ("family", "hooks")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    HOOKS_FIELD_NUMBER: _ClassVar[int]
    family: Family
    hooks: _containers.RepeatedCompositeFieldContainer[Hook]
    def __init__(self, family: _Optional[_Union[Family, str]] = ..., hooks: _Optional[_Iterable[_Union[Hook, _Mapping]]] = ...) -> None: ...

class SetMembersDelta(_message.Message):
    __slots__ = ("name", "added", "removed", "nomatch_added", "nomatch_removed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    NOMATCH_ADDED_FIELD_NUMBER: _ClassVar[int]
    NOMATCH_REMOVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    added: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    nomatch_added: _containers.RepeatedScalarFieldContainer[str]
    nomatch_removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., added: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ..., nomatch_added: _Optional[_Iterable[str]] = ..., nomatch_removed: _Optional[_Iterable[str]] = ...) -> None: ...

class ChainRef(_message.Message):
    __slots__ = ("family", "name")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    family: Family
    name: str
    def __init__(self, family: _Optional[_Union[Family, str]] = ..., name: _Optional[str] = ...) -> None: ...

class SnapshotPart(_message.Message):
    __slots__ = ("version", "sets", "chains", "hooks")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    HOOKS_FIELD_NUMBER: _ClassVar[int]
    version: int
    sets: _containers.RepeatedCompositeFieldContainer[IPSet]
    chains: _containers.RepeatedCompositeFieldContainer[Chain]
    hooks: _containers.RepeatedCompositeFieldContainer[FamilyHooks]
    def __init__(self, version: _Optional[int] = ..., sets: _Optional[_Iterable[_Union[IPSet, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[Chain, _Mapping]]] = ..., hooks: _Optional[_Iterable[_Union[FamilyHooks, _Mapping]]] = ...) -> None: ...

class SnapshotComplete(_message.Message):
    __slots__ = ("node", "version", "digest", "parts", "replica")
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    node: str
    version: int
    digest: str
    parts: int
    replica: str
    def __init__(self, node: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., parts: _Optional[int] = ..., replica: _Optional[str] = ...) -> None: ...

class DeltaPart(_message.Message):
    __slots__ = ("version", "sets_upserted", "sets_removed", "set_members", "chains_upserted", "chains_removed", "hooks")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SETS_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    SETS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SET_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_UPSERTED_FIELD_NUMBER: _ClassVar[int]
    CHAINS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    HOOKS_FIELD_NUMBER: _ClassVar[int]
    version: int
    sets_upserted: _containers.RepeatedCompositeFieldContainer[IPSet]
    sets_removed: _containers.RepeatedScalarFieldContainer[str]
    set_members: _containers.RepeatedCompositeFieldContainer[SetMembersDelta]
    chains_upserted: _containers.RepeatedCompositeFieldContainer[Chain]
    chains_removed: _containers.RepeatedCompositeFieldContainer[ChainRef]
    hooks: _containers.RepeatedCompositeFieldContainer[FamilyHooks]
    def __init__(self, version: _Optional[int] = ..., sets_upserted: _Optional[_Iterable[_Union[IPSet, _Mapping]]] = ..., sets_removed: _Optional[_Iterable[str]] = ..., set_members: _Optional[_Iterable[_Union[SetMembersDelta, _Mapping]]] = ..., chains_upserted: _Optional[_Iterable[_Union[Chain, _Mapping]]] = ..., chains_removed: _Optional[_Iterable[_Union[ChainRef, _Mapping]]] = ..., hooks: _Optional[_Iterable[_Union[FamilyHooks, _Mapping]]] = ...) -> None: ...

class DeltaComplete(_message.Message):
    __slots__ = ("node", "base_version", "base_digest", "version", "digest", "parts", "replica")
    NODE_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    node: str
    base_version: int
    base_digest: str
    version: int
    digest: str
    parts: int
    replica: str
    def __init__(self, node: _Optional[str] = ..., base_version: _Optional[int] = ..., base_digest: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., parts: _Optional[int] = ..., replica: _Optional[str] = ...) -> None: ...

class InSync(_message.Message):
    __slots__ = ("node", "version", "digest", "replica")
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    node: str
    version: int
    digest: str
    replica: str
    def __init__(self, node: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("in_sync", "snapshot_part", "snapshot_complete", "delta_part", "delta_complete")
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_PART_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    DELTA_PART_FIELD_NUMBER: _ClassVar[int]
    DELTA_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    in_sync: InSync
    snapshot_part: SnapshotPart
    snapshot_complete: SnapshotComplete
    delta_part: DeltaPart
    delta_complete: DeltaComplete
    def __init__(self, in_sync: _Optional[_Union[InSync, _Mapping]] = ..., snapshot_part: _Optional[_Union[SnapshotPart, _Mapping]] = ..., snapshot_complete: _Optional[_Union[SnapshotComplete, _Mapping]] = ..., delta_part: _Optional[_Union[DeltaPart, _Mapping]] = ..., delta_complete: _Optional[_Union[DeltaComplete, _Mapping]] = ...) -> None: ...

class HostCheck(_message.Message):
    __slots__ = ("name", "ok", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node", "agent_version", "applied_digest", "host_checks")
    NODE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    HOST_CHECKS_FIELD_NUMBER: _ClassVar[int]
    node: str
    agent_version: str
    applied_digest: str
    host_checks: _containers.RepeatedCompositeFieldContainer[HostCheck]
    def __init__(self, node: _Optional[str] = ..., agent_version: _Optional[str] = ..., applied_digest: _Optional[str] = ..., host_checks: _Optional[_Iterable[_Union[HostCheck, _Mapping]]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("version", "ok", "error", "applied_digest", "applied_version", "apply_seconds", "counts", "writes", "resync", "drift_repairs")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    APPLIED_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPAIRS_FIELD_NUMBER: _ClassVar[int]
    version: int
    ok: bool
    error: str
    applied_digest: str
    applied_version: int
    apply_seconds: float
    counts: _containers.ScalarMap[str, int]
    writes: int
    resync: bool
    drift_repairs: int
    def __init__(self, version: _Optional[int] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., applied_digest: _Optional[str] = ..., applied_version: _Optional[int] = ..., apply_seconds: _Optional[float] = ..., counts: _Optional[_Mapping[str, int]] = ..., writes: _Optional[int] = ..., resync: _Optional[bool] = ..., drift_repairs: _Optional[int] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node", "connected", "replica", "peer", "agent_version", "desired_version", "desired_digest", "applied_version", "applied_digest", "in_sync", "lag", "last_apply_unix", "last_apply_seconds", "last_error", "host_checks", "drift_repairs", "counts")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    APPLIED_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLY_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    HOST_CHECKS_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPAIRS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    node: str
    connected: bool
    replica: str
    peer: str
    agent_version: str
    desired_version: int
    desired_digest: str
    applied_version: int
    applied_digest: str
    in_sync: bool
    lag: int
    last_apply_unix: float
    last_apply_seconds: float
    last_error: str
    host_checks: _containers.RepeatedCompositeFieldContainer[HostCheck]
    drift_repairs: int
    counts: _containers.ScalarMap[str, int]
    def __init__(self, node: _Optional[str] = ..., connected: _Optional[bool] = ..., replica: _Optional[str] = ..., peer: _Optional[str] = ..., agent_version: _Optional[str] = ..., desired_version: _Optional[int] = ..., desired_digest: _Optional[str] = ..., applied_version: _Optional[int] = ..., applied_digest: _Optional[str] = ..., in_sync: _Optional[bool] = ..., lag: _Optional[int] = ..., last_apply_unix: _Optional[float] = ..., last_apply_seconds: _Optional[float] = ..., last_error: _Optional[str] = ..., host_checks: _Optional[_Iterable[_Union[HostCheck, _Mapping]]] = ..., drift_repairs: _Optional[int] = ..., counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ...) -> None: ...

class GetNodeStateRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class GetNodeStateResponse(_message.Message):
    __slots__ = ("node", "version", "digest", "sets", "chains", "hooks")
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    HOOKS_FIELD_NUMBER: _ClassVar[int]
    node: str
    version: int
    digest: str
    sets: _containers.RepeatedCompositeFieldContainer[IPSet]
    chains: _containers.RepeatedCompositeFieldContainer[Chain]
    hooks: _containers.RepeatedCompositeFieldContainer[FamilyHooks]
    def __init__(self, node: _Optional[str] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., sets: _Optional[_Iterable[_Union[IPSet, _Mapping]]] = ..., chains: _Optional[_Iterable[_Union[Chain, _Mapping]]] = ..., hooks: _Optional[_Iterable[_Union[FamilyHooks, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("src", "dst", "port", "protocol")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    port: int
    protocol: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("verdict", "json", "reasons")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    json: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, verdict: _Optional[str] = ..., json: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAppliedRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAppliedResponse(_message.Message):
    __slots__ = ("node", "digest", "version", "counts", "status_json", "connected", "controller", "last_error", "last_apply_unix")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLY_UNIX_FIELD_NUMBER: _ClassVar[int]
    node: str
    digest: str
    version: int
    counts: _containers.ScalarMap[str, int]
    status_json: str
    connected: bool
    controller: str
    last_error: str
    last_apply_unix: float
    def __init__(self, node: _Optional[str] = ..., digest: _Optional[str] = ..., version: _Optional[int] = ..., counts: _Optional[_Mapping[str, int]] = ..., status_json: _Optional[str] = ..., connected: _Optional[bool] = ..., controller: _Optional[str] = ..., last_error: _Optional[str] = ..., last_apply_unix: _Optional[float] = ...) -> None: ...
