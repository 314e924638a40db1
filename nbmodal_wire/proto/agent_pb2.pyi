from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VolumeOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOLUME_OP_UNSPECIFIED: _ClassVar[VolumeOp]
    VOLUME_CREATE: _ClassVar[VolumeOp]
    VOLUME_LOOKUP: _ClassVar[VolumeOp]
    VOLUME_DELETE: _ClassVar[VolumeOp]
    VOLUME_LIST: _ClassVar[VolumeOp]
    VOLUME_LISTDIR: _ClassVar[VolumeOp]
    VOLUME_REMOVE: _ClassVar[VolumeOp]
    VOLUME_COPY: _ClassVar[VolumeOp]
    VOLUME_RENAME: _ClassVar[VolumeOp]
    VOLUME_STAT: _ClassVar[VolumeOp]
    VOLUME_COMMIT: _ClassVar[VolumeOp]
    VOLUME_MANIFEST: _ClassVar[VolumeOp]
    VOLUME_APPLY: _ClassVar[VolumeOp]
    VOLUME_VERSIONS: _ClassVar[VolumeOp]
    VOLUME_RECOVER: _ClassVar[VolumeOp]
    VOLUME_LOCAL_STAGE: _ClassVar[VolumeOp]
    VOLUME_LOCAL_COMMIT: _ClassVar[VolumeOp]
    VOLUME_LOCAL_READ: _ClassVar[VolumeOp]

class StoreOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORE_OP_UNSPECIFIED: _ClassVar[StoreOp]
    CREATE: _ClassVar[StoreOp]
    LOOKUP: _ClassVar[StoreOp]
    DELETE: _ClassVar[StoreOp]
    LIST: _ClassVar[StoreOp]
    LEN: _ClassVar[StoreOp]
    CLEAR: _ClassVar[StoreOp]
    GET: _ClassVar[StoreOp]
    PUT: _ClassVar[StoreOp]
    POP: _ClassVar[StoreOp]
    CONTAINS: _ClassVar[StoreOp]
    ITEMS: _ClassVar[StoreOp]

class ImageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_STATE_UNSPECIFIED: _ClassVar[ImageState]
    IMAGE_BUILDING: _ClassVar[ImageState]
    IMAGE_READY: _ClassVar[ImageState]
    IMAGE_FAILED: _ClassVar[ImageState]

class ImageOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_OP_UNSPECIFIED: _ClassVar[ImageOp]
    IMAGE_LIST: _ClassVar[ImageOp]
    IMAGE_REMOVE: _ClassVar[ImageOp]
    IMAGE_MISSING_FILES: _ClassVar[ImageOp]
    IMAGE_REBUILD: _ClassVar[ImageOp]
    IMAGE_LOG: _ClassVar[ImageOp]

class RunKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_KIND_UNSPECIFIED: _ClassVar[RunKind]
    CELL: _ClassVar[RunKind]
    FUNCTION: _ClassVar[RunKind]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    PENDING: _ClassVar[RunState]
    RUNNING: _ClassVar[RunState]
    SUCCEEDED: _ClassVar[RunState]
    FAILED: _ClassVar[RunState]
    CANCELLED: _ClassVar[RunState]
    TIMED_OUT: _ClassVar[RunState]
    LOST: _ClassVar[RunState]
    WAITING_FOR_DEBUGGER: _ClassVar[RunState]

class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STDOUT: _ClassVar[Stream]
    STDERR: _ClassVar[Stream]

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_GPU_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_RESOURCES_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_IMAGE_BUILD: _ClassVar[ErrorKind]
    ERROR_LAUNCH_REFUSED: _ClassVar[ErrorKind]
    ERROR_MOUNT: _ClassVar[ErrorKind]
    ERROR_CONTAINER_DIED: _ClassVar[ErrorKind]
    ERROR_CANCELLED: _ClassVar[ErrorKind]
    ERROR_AGENT: _ClassVar[ErrorKind]
    ERROR_MEMORY_LIMIT: _ClassVar[ErrorKind]
    ERROR_SECRET: _ClassVar[ErrorKind]
    ERROR_PROCESS_LIMIT: _ClassVar[ErrorKind]

class ContainerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTAINER_STATE_UNSPECIFIED: _ClassVar[ContainerState]
    CONTAINER_STARTING: _ClassVar[ContainerState]
    CONTAINER_IDLE: _ClassVar[ContainerState]
    CONTAINER_BUSY: _ClassVar[ContainerState]
    CONTAINER_EXITED: _ClassVar[ContainerState]

class SecretOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECRET_OP_UNSPECIFIED: _ClassVar[SecretOp]
    SECRET_CREATE: _ClassVar[SecretOp]
    SECRET_LIST: _ClassVar[SecretOp]
    SECRET_DELETE: _ClassVar[SecretOp]

class TunnelOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUNNEL_OP_UNSPECIFIED: _ClassVar[TunnelOp]
    TUNNEL_OPEN: _ClassVar[TunnelOp]
    TUNNEL_CLOSE: _ClassVar[TunnelOp]
    TUNNEL_LIST: _ClassVar[TunnelOp]

class AppOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APP_OP_UNSPECIFIED: _ClassVar[AppOp]
    APP_LIST: _ClassVar[AppOp]
    APP_LOOKUP: _ClassVar[AppOp]
    APP_STOP: _ClassVar[AppOp]
    APP_HISTORY: _ClassVar[AppOp]

class SandboxState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_STATE_UNSPECIFIED: _ClassVar[SandboxState]
    SANDBOX_STARTING: _ClassVar[SandboxState]
    SANDBOX_RUNNING: _ClassVar[SandboxState]
    SANDBOX_FINISHED: _ClassVar[SandboxState]
    SANDBOX_TERMINATED: _ClassVar[SandboxState]
    SANDBOX_TIMED_OUT: _ClassVar[SandboxState]
    SANDBOX_FAILED: _ClassVar[SandboxState]

class SandboxOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_OP_UNSPECIFIED: _ClassVar[SandboxOp]
    SANDBOX_GET: _ClassVar[SandboxOp]
    SANDBOX_LIST: _ClassVar[SandboxOp]
    SANDBOX_TERMINATE: _ClassVar[SandboxOp]
    SANDBOX_WAIT: _ClassVar[SandboxOp]
    SANDBOX_SET_TAGS: _ClassVar[SandboxOp]

class SandboxFileOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_FILE_OP_UNSPECIFIED: _ClassVar[SandboxFileOp]
    SANDBOX_FILE_READ: _ClassVar[SandboxFileOp]
    SANDBOX_FILE_WRITE: _ClassVar[SandboxFileOp]
    SANDBOX_FILE_LS: _ClassVar[SandboxFileOp]
    SANDBOX_FILE_MKDIR: _ClassVar[SandboxFileOp]
    SANDBOX_FILE_RM: _ClassVar[SandboxFileOp]
    SANDBOX_FILE_STAT: _ClassVar[SandboxFileOp]
VOLUME_OP_UNSPECIFIED: VolumeOp
VOLUME_CREATE: VolumeOp
VOLUME_LOOKUP: VolumeOp
VOLUME_DELETE: VolumeOp
VOLUME_LIST: VolumeOp
VOLUME_LISTDIR: VolumeOp
VOLUME_REMOVE: VolumeOp
VOLUME_COPY: VolumeOp
VOLUME_RENAME: VolumeOp
VOLUME_STAT: VolumeOp
VOLUME_COMMIT: VolumeOp
VOLUME_MANIFEST: VolumeOp
VOLUME_APPLY: VolumeOp
VOLUME_VERSIONS: VolumeOp
VOLUME_RECOVER: VolumeOp
VOLUME_LOCAL_STAGE: VolumeOp
VOLUME_LOCAL_COMMIT: VolumeOp
VOLUME_LOCAL_READ: VolumeOp
STORE_OP_UNSPECIFIED: StoreOp
CREATE: StoreOp
LOOKUP: StoreOp
DELETE: StoreOp
LIST: StoreOp
LEN: StoreOp
CLEAR: StoreOp
GET: StoreOp
PUT: StoreOp
POP: StoreOp
CONTAINS: StoreOp
ITEMS: StoreOp
IMAGE_STATE_UNSPECIFIED: ImageState
IMAGE_BUILDING: ImageState
IMAGE_READY: ImageState
IMAGE_FAILED: ImageState
IMAGE_OP_UNSPECIFIED: ImageOp
IMAGE_LIST: ImageOp
IMAGE_REMOVE: ImageOp
IMAGE_MISSING_FILES: ImageOp
IMAGE_REBUILD: ImageOp
IMAGE_LOG: ImageOp
RUN_KIND_UNSPECIFIED: RunKind
CELL: RunKind
FUNCTION: RunKind
RUN_STATE_UNSPECIFIED: RunState
PENDING: RunState
RUNNING: RunState
SUCCEEDED: RunState
FAILED: RunState
CANCELLED: RunState
TIMED_OUT: RunState
LOST: RunState
WAITING_FOR_DEBUGGER: RunState
STDOUT: Stream
STDERR: Stream
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_GPU_UNAVAILABLE: ErrorKind
ERROR_RESOURCES_UNAVAILABLE: ErrorKind
ERROR_IMAGE_BUILD: ErrorKind
ERROR_LAUNCH_REFUSED: ErrorKind
ERROR_MOUNT: ErrorKind
ERROR_CONTAINER_DIED: ErrorKind
ERROR_CANCELLED: ErrorKind
ERROR_AGENT: ErrorKind
ERROR_MEMORY_LIMIT: ErrorKind
ERROR_SECRET: ErrorKind
ERROR_PROCESS_LIMIT: ErrorKind
CONTAINER_STATE_UNSPECIFIED: ContainerState
CONTAINER_STARTING: ContainerState
CONTAINER_IDLE: ContainerState
CONTAINER_BUSY: ContainerState
CONTAINER_EXITED: ContainerState
SECRET_OP_UNSPECIFIED: SecretOp
SECRET_CREATE: SecretOp
SECRET_LIST: SecretOp
SECRET_DELETE: SecretOp
TUNNEL_OP_UNSPECIFIED: TunnelOp
TUNNEL_OPEN: TunnelOp
TUNNEL_CLOSE: TunnelOp
TUNNEL_LIST: TunnelOp
APP_OP_UNSPECIFIED: AppOp
APP_LIST: AppOp
APP_LOOKUP: AppOp
APP_STOP: AppOp
APP_HISTORY: AppOp
SANDBOX_STATE_UNSPECIFIED: SandboxState
SANDBOX_STARTING: SandboxState
SANDBOX_RUNNING: SandboxState
SANDBOX_FINISHED: SandboxState
SANDBOX_TERMINATED: SandboxState
SANDBOX_TIMED_OUT: SandboxState
SANDBOX_FAILED: SandboxState
SANDBOX_OP_UNSPECIFIED: SandboxOp
SANDBOX_GET: SandboxOp
SANDBOX_LIST: SandboxOp
SANDBOX_TERMINATE: SandboxOp
SANDBOX_WAIT: SandboxOp
SANDBOX_SET_TAGS: SandboxOp
SANDBOX_FILE_OP_UNSPECIFIED: SandboxFileOp
SANDBOX_FILE_READ: SandboxFileOp
SANDBOX_FILE_WRITE: SandboxFileOp
SANDBOX_FILE_LS: SandboxFileOp
SANDBOX_FILE_MKDIR: SandboxFileOp
SANDBOX_FILE_RM: SandboxFileOp
SANDBOX_FILE_STAT: SandboxFileOp

class VolumeRequest(_message.Message):
    __slots__ = ("op", "name", "path", "paths", "recursive", "new_name", "ephemeral", "sha256", "offset", "base_version", "changes", "from_host", "job_copy", "local_path", "blake3", "force")
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    FROM_HOST_FIELD_NUMBER: _ClassVar[int]
    JOB_COPY_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    op: VolumeOp
    name: str
    path: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    recursive: bool
    new_name: str
    ephemeral: bool
    sha256: str
    offset: int
    base_version: int
    changes: _containers.RepeatedCompositeFieldContainer[VolumeChange]
    from_host: str
    job_copy: bool
    local_path: str
    blake3: str
    force: bool
    def __init__(self, op: _Optional[_Union[VolumeOp, str]] = ..., name: _Optional[str] = ..., path: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., recursive: _Optional[bool] = ..., new_name: _Optional[str] = ..., ephemeral: _Optional[bool] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., base_version: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[VolumeChange, _Mapping]]] = ..., from_host: _Optional[str] = ..., job_copy: _Optional[bool] = ..., local_path: _Optional[str] = ..., blake3: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class VolumeChange(_message.Message):
    __slots__ = ("path", "sha256", "size", "deleted", "version", "host")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size: int
    deleted: bool
    version: int
    host: str
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., deleted: _Optional[bool] = ..., version: _Optional[int] = ..., host: _Optional[str] = ...) -> None: ...

class VolumeEntry(_message.Message):
    __slots__ = ("path", "type", "size", "mtime")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    path: str
    type: str
    size: int
    mtime: float
    def __init__(self, path: _Optional[str] = ..., type: _Optional[str] = ..., size: _Optional[int] = ..., mtime: _Optional[float] = ...) -> None: ...

class VolumeReply(_message.Message):
    __slots__ = ("entries", "stores", "created", "file", "version", "manifest", "copy", "overwritten")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    OVERWRITTEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[VolumeEntry]
    stores: _containers.RepeatedCompositeFieldContainer[StoreInfo]
    created: bool
    file: VolumeFile
    version: int
    manifest: _containers.RepeatedCompositeFieldContainer[VolumeChange]
    copy: StoreInfo
    overwritten: _containers.RepeatedCompositeFieldContainer[VolumeChange]
    def __init__(self, entries: _Optional[_Iterable[_Union[VolumeEntry, _Mapping]]] = ..., stores: _Optional[_Iterable[_Union[StoreInfo, _Mapping]]] = ..., created: _Optional[bool] = ..., file: _Optional[_Union[VolumeFile, _Mapping]] = ..., version: _Optional[int] = ..., manifest: _Optional[_Iterable[_Union[VolumeChange, _Mapping]]] = ..., copy: _Optional[_Union[StoreInfo, _Mapping]] = ..., overwritten: _Optional[_Iterable[_Union[VolumeChange, _Mapping]]] = ...) -> None: ...

class VolumeFile(_message.Message):
    __slots__ = ("name", "path", "size", "sha256", "offset", "exists", "stage", "local_path", "blake3")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    size: int
    sha256: str
    offset: int
    exists: bool
    stage: bool
    local_path: str
    blake3: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ..., exists: _Optional[bool] = ..., stage: _Optional[bool] = ..., local_path: _Optional[str] = ..., blake3: _Optional[str] = ...) -> None: ...

class VolumeChunk(_message.Message):
    __slots__ = ("file", "data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file: VolumeFile
    data: bytes
    def __init__(self, file: _Optional[_Union[VolumeFile, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class DictRequest(_message.Message):
    __slots__ = ("op", "name", "keys", "values", "skip_if_exists", "ephemeral", "keys_only")
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SKIP_IF_EXISTS_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    op: StoreOp
    name: str
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    skip_if_exists: bool
    ephemeral: bool
    keys_only: bool
    def __init__(self, op: _Optional[_Union[StoreOp, str]] = ..., name: _Optional[str] = ..., keys: _Optional[_Iterable[bytes]] = ..., values: _Optional[_Iterable[bytes]] = ..., skip_if_exists: _Optional[bool] = ..., ephemeral: _Optional[bool] = ..., keys_only: _Optional[bool] = ...) -> None: ...

class DictReply(_message.Message):
    __slots__ = ("found", "keys", "values", "length", "stores", "created")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    found: bool
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    length: int
    stores: _containers.RepeatedCompositeFieldContainer[StoreInfo]
    created: bool
    def __init__(self, found: _Optional[bool] = ..., keys: _Optional[_Iterable[bytes]] = ..., values: _Optional[_Iterable[bytes]] = ..., length: _Optional[int] = ..., stores: _Optional[_Iterable[_Union[StoreInfo, _Mapping]]] = ..., created: _Optional[bool] = ...) -> None: ...

class QueueRequest(_message.Message):
    __slots__ = ("op", "name", "partition", "values", "count", "block", "timeout_s", "total", "ephemeral")
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    op: StoreOp
    name: str
    partition: str
    values: _containers.RepeatedScalarFieldContainer[bytes]
    count: int
    block: bool
    timeout_s: float
    total: bool
    ephemeral: bool
    def __init__(self, op: _Optional[_Union[StoreOp, str]] = ..., name: _Optional[str] = ..., partition: _Optional[str] = ..., values: _Optional[_Iterable[bytes]] = ..., count: _Optional[int] = ..., block: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., total: _Optional[bool] = ..., ephemeral: _Optional[bool] = ...) -> None: ...

class QueueReply(_message.Message):
    __slots__ = ("values", "length", "empty", "full", "stores", "created")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    length: int
    empty: bool
    full: bool
    stores: _containers.RepeatedCompositeFieldContainer[StoreInfo]
    created: bool
    def __init__(self, values: _Optional[_Iterable[bytes]] = ..., length: _Optional[int] = ..., empty: _Optional[bool] = ..., full: _Optional[bool] = ..., stores: _Optional[_Iterable[_Union[StoreInfo, _Mapping]]] = ..., created: _Optional[bool] = ...) -> None: ...

class StoreInfo(_message.Message):
    __slots__ = ("name", "length", "created", "ephemeral", "home", "version", "role", "pending")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    HOME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    name: str
    length: int
    created: float
    ephemeral: bool
    home: str
    version: int
    role: str
    pending: bool
    def __init__(self, name: _Optional[str] = ..., length: _Optional[int] = ..., created: _Optional[float] = ..., ephemeral: _Optional[bool] = ..., home: _Optional[str] = ..., version: _Optional[int] = ..., role: _Optional[str] = ..., pending: _Optional[bool] = ...) -> None: ...

class ReplicaRoute(_message.Message):
    __slots__ = ("host", "port", "token")
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    host: str
    port: int
    token: str
    def __init__(self, host: _Optional[str] = ..., port: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class ReplicaHome(_message.Message):
    __slots__ = ("kind", "name", "host")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    host: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class ReplicaRoutesRequest(_message.Message):
    __slots__ = ("self_name", "routes", "homes", "forget")
    SELF_NAME_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    HOMES_FIELD_NUMBER: _ClassVar[int]
    FORGET_FIELD_NUMBER: _ClassVar[int]
    self_name: str
    routes: _containers.RepeatedCompositeFieldContainer[ReplicaRoute]
    homes: _containers.RepeatedCompositeFieldContainer[ReplicaHome]
    forget: _containers.RepeatedCompositeFieldContainer[ReplicaHome]
    def __init__(self, self_name: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[ReplicaRoute, _Mapping]]] = ..., homes: _Optional[_Iterable[_Union[ReplicaHome, _Mapping]]] = ..., forget: _Optional[_Iterable[_Union[ReplicaHome, _Mapping]]] = ...) -> None: ...

class ReplicaRoutesReply(_message.Message):
    __slots__ = ("homes",)
    HOMES_FIELD_NUMBER: _ClassVar[int]
    homes: _containers.RepeatedCompositeFieldContainer[ReplicaHome]
    def __init__(self, homes: _Optional[_Iterable[_Union[ReplicaHome, _Mapping]]] = ...) -> None: ...

class BlobChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class BlobRef(_message.Message):
    __slots__ = ("blob_id", "delete", "size")
    BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    blob_id: str
    delete: bool
    size: int
    def __init__(self, blob_id: _Optional[str] = ..., delete: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("protocol_version", "client_version", "client_python")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PYTHON_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    client_version: str
    client_python: str
    def __init__(self, protocol_version: _Optional[int] = ..., client_version: _Optional[str] = ..., client_python: _Optional[str] = ...) -> None: ...

class HelloReply(_message.Message):
    __slots__ = ("protocol_version", "agent_version", "container_python", "pid", "hostname", "state_dir")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PYTHON_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    agent_version: str
    container_python: str
    pid: int
    hostname: str
    state_dir: str
    def __init__(self, protocol_version: _Optional[int] = ..., agent_version: _Optional[str] = ..., container_python: _Optional[str] = ..., pid: _Optional[int] = ..., hostname: _Optional[str] = ..., state_dir: _Optional[str] = ...) -> None: ...

class ContainerSpec(_message.Message):
    __slots__ = ("image", "gpu", "volumes", "env", "workdir", "scaledown_window_s", "min_containers", "buffer_containers", "cpu", "memory_mib", "local_mounts", "cpu_limit", "memory_limit_mib", "secrets_digest", "block_network", "sandbox")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    SCALEDOWN_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    LOCAL_MOUNTS_FIELD_NUMBER: _ClassVar[int]
    CPU_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_MIB_FIELD_NUMBER: _ClassVar[int]
    SECRETS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NETWORK_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    image: str
    gpu: str
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeMount]
    env: _containers.ScalarMap[str, str]
    workdir: str
    scaledown_window_s: float
    min_containers: int
    buffer_containers: int
    cpu: float
    memory_mib: int
    local_mounts: _containers.RepeatedCompositeFieldContainer[LocalMount]
    cpu_limit: float
    memory_limit_mib: int
    secrets_digest: str
    block_network: bool
    sandbox: bool
    def __init__(self, image: _Optional[str] = ..., gpu: _Optional[str] = ..., volumes: _Optional[_Iterable[_Union[VolumeMount, _Mapping]]] = ..., env: _Optional[_Mapping[str, str]] = ..., workdir: _Optional[str] = ..., scaledown_window_s: _Optional[float] = ..., min_containers: _Optional[int] = ..., buffer_containers: _Optional[int] = ..., cpu: _Optional[float] = ..., memory_mib: _Optional[int] = ..., local_mounts: _Optional[_Iterable[_Union[LocalMount, _Mapping]]] = ..., cpu_limit: _Optional[float] = ..., memory_limit_mib: _Optional[int] = ..., secrets_digest: _Optional[str] = ..., block_network: _Optional[bool] = ..., sandbox: _Optional[bool] = ...) -> None: ...

class ImageSpec(_message.Message):
    __slots__ = ("name", "steps", "preload", "imports", "force_build")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PRELOAD_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    FORCE_BUILD_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: _containers.RepeatedCompositeFieldContainer[ImageStep]
    preload: _containers.RepeatedScalarFieldContainer[str]
    imports: str
    force_build: bool
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[ImageStep, _Mapping]]] = ..., preload: _Optional[_Iterable[str]] = ..., imports: _Optional[str] = ..., force_build: _Optional[bool] = ...) -> None: ...

class ImageStep(_message.Message):
    __slots__ = ("kind", "args", "options", "files", "remote_path", "payload", "text", "secrets")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    REMOTE_PATH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    args: _containers.RepeatedScalarFieldContainer[str]
    options: _containers.ScalarMap[str, str]
    files: _containers.RepeatedCompositeFieldContainer[LocalFile]
    remote_path: str
    payload: bytes
    text: str
    secrets: _containers.RepeatedCompositeFieldContainer[SecretSource]
    def __init__(self, kind: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., options: _Optional[_Mapping[str, str]] = ..., files: _Optional[_Iterable[_Union[LocalFile, _Mapping]]] = ..., remote_path: _Optional[str] = ..., payload: _Optional[bytes] = ..., text: _Optional[str] = ..., secrets: _Optional[_Iterable[_Union[SecretSource, _Mapping]]] = ...) -> None: ...

class LocalFile(_message.Message):
    __slots__ = ("path", "sha256", "size", "mode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    sha256: str
    size: int
    mode: int
    def __init__(self, path: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ...) -> None: ...

class LocalMount(_message.Message):
    __slots__ = ("remote_path", "files")
    REMOTE_PATH_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    remote_path: str
    files: _containers.RepeatedCompositeFieldContainer[LocalFile]
    def __init__(self, remote_path: _Optional[str] = ..., files: _Optional[_Iterable[_Union[LocalFile, _Mapping]]] = ...) -> None: ...

class BuildEvent(_message.Message):
    __slots__ = ("log", "progress", "built", "failed")
    LOG_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    BUILT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    log: str
    progress: BuildProgress
    built: ImageInfo
    failed: BuildFailure
    def __init__(self, log: _Optional[str] = ..., progress: _Optional[_Union[BuildProgress, _Mapping]] = ..., built: _Optional[_Union[ImageInfo, _Mapping]] = ..., failed: _Optional[_Union[BuildFailure, _Mapping]] = ...) -> None: ...

class BuildProgress(_message.Message):
    __slots__ = ("step", "steps", "text", "cached")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    step: int
    steps: int
    text: str
    cached: bool
    def __init__(self, step: _Optional[int] = ..., steps: _Optional[int] = ..., text: _Optional[str] = ..., cached: _Optional[bool] = ...) -> None: ...

class BuildFailure(_message.Message):
    __slots__ = ("step", "text", "message", "log_tail")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    step: int
    text: str
    message: str
    log_tail: str
    def __init__(self, step: _Optional[int] = ..., text: _Optional[str] = ..., message: _Optional[str] = ..., log_tail: _Optional[str] = ...) -> None: ...

class ImageInfo(_message.Message):
    __slots__ = ("image_id", "name", "state", "size_bytes", "created", "last_used", "python", "steps", "built_steps", "log_path", "error", "build_s")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BUILT_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BUILD_S_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    name: str
    state: ImageState
    size_bytes: int
    created: float
    last_used: float
    python: str
    steps: int
    built_steps: int
    log_path: str
    error: str
    build_s: float
    def __init__(self, image_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[ImageState, str]] = ..., size_bytes: _Optional[int] = ..., created: _Optional[float] = ..., last_used: _Optional[float] = ..., python: _Optional[str] = ..., steps: _Optional[int] = ..., built_steps: _Optional[int] = ..., log_path: _Optional[str] = ..., error: _Optional[str] = ..., build_s: _Optional[float] = ...) -> None: ...

class ImageRequest(_message.Message):
    __slots__ = ("op", "name_or_id", "sha256s")
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_OR_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256S_FIELD_NUMBER: _ClassVar[int]
    op: ImageOp
    name_or_id: str
    sha256s: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, op: _Optional[_Union[ImageOp, str]] = ..., name_or_id: _Optional[str] = ..., sha256s: _Optional[_Iterable[str]] = ...) -> None: ...

class ImageReply(_message.Message):
    __slots__ = ("images", "missing", "log")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImageInfo]
    missing: _containers.RepeatedScalarFieldContainer[str]
    log: str
    def __init__(self, images: _Optional[_Iterable[_Union[ImageInfo, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., log: _Optional[str] = ...) -> None: ...

class VolumeMount(_message.Message):
    __slots__ = ("volume", "path")
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    volume: str
    path: str
    def __init__(self, volume: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("kind", "label", "payload", "code", "filename", "first_line", "spec", "session", "timeout_s", "cancel_grace_s", "detach", "client_python", "max_result_bytes", "cwd", "run_id", "payload_blob", "generator", "app", "deployed", "secrets", "web", "debug_sources", "cluster")
    class DebugSourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    CANCEL_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PYTHON_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BLOB_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    WEB_FIELD_NUMBER: _ClassVar[int]
    DEBUG_SOURCES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    kind: RunKind
    label: str
    payload: bytes
    code: str
    filename: str
    first_line: int
    spec: ContainerSpec
    session: str
    timeout_s: float
    cancel_grace_s: float
    detach: bool
    client_python: str
    max_result_bytes: int
    cwd: str
    run_id: str
    payload_blob: str
    generator: bool
    app: str
    deployed: DeployRef
    secrets: _containers.RepeatedCompositeFieldContainer[SecretSource]
    web: WebAccess
    debug_sources: _containers.ScalarMap[str, str]
    cluster: ClusterMember
    def __init__(self, kind: _Optional[_Union[RunKind, str]] = ..., label: _Optional[str] = ..., payload: _Optional[bytes] = ..., code: _Optional[str] = ..., filename: _Optional[str] = ..., first_line: _Optional[int] = ..., spec: _Optional[_Union[ContainerSpec, _Mapping]] = ..., session: _Optional[str] = ..., timeout_s: _Optional[float] = ..., cancel_grace_s: _Optional[float] = ..., detach: _Optional[bool] = ..., client_python: _Optional[str] = ..., max_result_bytes: _Optional[int] = ..., cwd: _Optional[str] = ..., run_id: _Optional[str] = ..., payload_blob: _Optional[str] = ..., generator: _Optional[bool] = ..., app: _Optional[str] = ..., deployed: _Optional[_Union[DeployRef, _Mapping]] = ..., secrets: _Optional[_Iterable[_Union[SecretSource, _Mapping]]] = ..., web: _Optional[_Union[WebAccess, _Mapping]] = ..., debug_sources: _Optional[_Mapping[str, str]] = ..., cluster: _Optional[_Union[ClusterMember, _Mapping]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("seq", "time", "started", "output", "display", "finished", "notice", "item", "input_started", "input_request", "input_answered")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    INPUT_STARTED_FIELD_NUMBER: _ClassVar[int]
    INPUT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    INPUT_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: float
    started: RunStarted
    output: Output
    display: Display
    finished: RunFinished
    notice: Notice
    item: Item
    input_started: InputStarted
    input_request: InputRequest
    input_answered: InputAnswered
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[float] = ..., started: _Optional[_Union[RunStarted, _Mapping]] = ..., output: _Optional[_Union[Output, _Mapping]] = ..., display: _Optional[_Union[Display, _Mapping]] = ..., finished: _Optional[_Union[RunFinished, _Mapping]] = ..., notice: _Optional[_Union[Notice, _Mapping]] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., input_started: _Optional[_Union[InputStarted, _Mapping]] = ..., input_request: _Optional[_Union[InputRequest, _Mapping]] = ..., input_answered: _Optional[_Union[InputAnswered, _Mapping]] = ...) -> None: ...

class InputRequest(_message.Message):
    __slots__ = ("prompt", "debugger", "input_index", "password", "withdrawn")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    DEBUGGER_FIELD_NUMBER: _ClassVar[int]
    INPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    debugger: bool
    input_index: int
    password: bool
    withdrawn: bool
    def __init__(self, prompt: _Optional[str] = ..., debugger: _Optional[bool] = ..., input_index: _Optional[int] = ..., password: _Optional[bool] = ..., withdrawn: _Optional[bool] = ...) -> None: ...

class InputAnswered(_message.Message):
    __slots__ = ("request_seq", "text", "eof")
    REQUEST_SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    request_seq: int
    text: str
    eof: bool
    def __init__(self, request_seq: _Optional[int] = ..., text: _Optional[str] = ..., eof: _Optional[bool] = ...) -> None: ...

class InputAnswerRequest(_message.Message):
    __slots__ = ("run_id", "request_seq", "text", "eof")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    request_seq: int
    text: str
    eof: bool
    def __init__(self, run_id: _Optional[str] = ..., request_seq: _Optional[int] = ..., text: _Optional[str] = ..., eof: _Optional[bool] = ...) -> None: ...

class InputAnswer(_message.Message):
    __slots__ = ("text", "eof")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    text: str
    eof: bool
    def __init__(self, text: _Optional[str] = ..., eof: _Optional[bool] = ...) -> None: ...

class InputStarted(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: int
    def __init__(self, index: _Optional[int] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("value", "blob")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    blob: str
    def __init__(self, value: _Optional[bytes] = ..., blob: _Optional[str] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("stream", "data")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    data: bytes
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Display(_message.Message):
    __slots__ = ("data_json", "metadata_json", "execute_result")
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_RESULT_FIELD_NUMBER: _ClassVar[int]
    data_json: str
    metadata_json: str
    execute_result: bool
    def __init__(self, data_json: _Optional[str] = ..., metadata_json: _Optional[str] = ..., execute_result: _Optional[bool] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ValueInfo(_message.Message):
    __slots__ = ("name", "type_name", "size", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    type_name: str
    size: int
    reason: str
    def __init__(self, name: _Optional[str] = ..., type_name: _Optional[str] = ..., size: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("type_name", "message", "traceback", "exception", "kind")
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    type_name: str
    message: str
    traceback: str
    exception: bytes
    kind: ErrorKind
    def __init__(self, type_name: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., exception: _Optional[bytes] = ..., kind: _Optional[_Union[ErrorKind, str]] = ...) -> None: ...

class RunFinished(_message.Message):
    __slots__ = ("state", "values", "return_value", "left_out", "remote_values", "error", "session_names", "results_dropped", "modules", "value_blobs", "return_blob")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class ModulesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ValueBlobsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    RETURN_VALUE_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_VALUES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SESSION_NAMES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    VALUE_BLOBS_FIELD_NUMBER: _ClassVar[int]
    RETURN_BLOB_FIELD_NUMBER: _ClassVar[int]
    state: RunState
    values: _containers.ScalarMap[str, bytes]
    return_value: bytes
    left_out: _containers.RepeatedCompositeFieldContainer[ValueInfo]
    remote_values: _containers.RepeatedCompositeFieldContainer[ValueInfo]
    error: ErrorInfo
    session_names: _containers.RepeatedScalarFieldContainer[str]
    results_dropped: bool
    modules: _containers.ScalarMap[str, str]
    value_blobs: _containers.ScalarMap[str, str]
    return_blob: str
    def __init__(self, state: _Optional[_Union[RunState, str]] = ..., values: _Optional[_Mapping[str, bytes]] = ..., return_value: _Optional[bytes] = ..., left_out: _Optional[_Iterable[_Union[ValueInfo, _Mapping]]] = ..., remote_values: _Optional[_Iterable[_Union[ValueInfo, _Mapping]]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., session_names: _Optional[_Iterable[str]] = ..., results_dropped: _Optional[bool] = ..., modules: _Optional[_Mapping[str, str]] = ..., value_blobs: _Optional[_Mapping[str, str]] = ..., return_blob: _Optional[str] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run_id", "state", "kind", "label", "session", "created", "started", "finished", "container_id", "detach", "error", "last_seq", "agent_pid", "input_request_seq", "cluster_id", "cluster_rank", "cluster_size")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    AGENT_PID_FIELD_NUMBER: _ClassVar[int]
    INPUT_REQUEST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_RANK_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: RunState
    kind: RunKind
    label: str
    session: str
    created: float
    started: float
    finished: float
    container_id: str
    detach: bool
    error: str
    last_seq: int
    agent_pid: int
    input_request_seq: int
    cluster_id: str
    cluster_rank: int
    cluster_size: int
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., kind: _Optional[_Union[RunKind, str]] = ..., label: _Optional[str] = ..., session: _Optional[str] = ..., created: _Optional[float] = ..., started: _Optional[float] = ..., finished: _Optional[float] = ..., container_id: _Optional[str] = ..., detach: _Optional[bool] = ..., error: _Optional[str] = ..., last_seq: _Optional[int] = ..., agent_pid: _Optional[int] = ..., input_request_seq: _Optional[int] = ..., cluster_id: _Optional[str] = ..., cluster_rank: _Optional[int] = ..., cluster_size: _Optional[int] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("run_id", "after_seq", "follow")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_seq: int
    follow: bool
    def __init__(self, run_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("run_id", "force")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    force: bool
    def __init__(self, run_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class RunList(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("name", "container_id", "pid", "names", "created", "last_used", "busy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    name: str
    container_id: str
    pid: int
    names: _containers.RepeatedScalarFieldContainer[str]
    created: float
    last_used: float
    busy: bool
    def __init__(self, name: _Optional[str] = ..., container_id: _Optional[str] = ..., pid: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ..., created: _Optional[float] = ..., last_used: _Optional[float] = ..., busy: _Optional[bool] = ...) -> None: ...

class SessionList(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ...) -> None: ...

class SessionRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class FetchValueRequest(_message.Message):
    __slots__ = ("session", "name")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    session: str
    name: str
    def __init__(self, session: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class FetchValueReply(_message.Message):
    __slots__ = ("value", "error", "value_blob")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VALUE_BLOB_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    error: str
    value_blob: str
    def __init__(self, value: _Optional[bytes] = ..., error: _Optional[str] = ..., value_blob: _Optional[str] = ...) -> None: ...

class ContainerInfo(_message.Message):
    __slots__ = ("container_id", "pid", "spec", "state", "session", "run_id", "created", "idle_since", "gpus", "kind", "sandbox_id", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    IDLE_SINCE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    pid: int
    spec: ContainerSpec
    state: ContainerState
    session: str
    run_id: str
    created: float
    idle_since: float
    gpus: _containers.RepeatedScalarFieldContainer[int]
    kind: str
    sandbox_id: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, container_id: _Optional[str] = ..., pid: _Optional[int] = ..., spec: _Optional[_Union[ContainerSpec, _Mapping]] = ..., state: _Optional[_Union[ContainerState, str]] = ..., session: _Optional[str] = ..., run_id: _Optional[str] = ..., created: _Optional[float] = ..., idle_since: _Optional[float] = ..., gpus: _Optional[_Iterable[int]] = ..., kind: _Optional[str] = ..., sandbox_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ContainerRef(_message.Message):
    __slots__ = ("container_id",)
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    def __init__(self, container_id: _Optional[str] = ...) -> None: ...

class HostStatsReply(_message.Message):
    __slots__ = ("load1", "cpus", "memory_total", "memory_available")
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    load1: float
    cpus: int
    memory_total: int
    memory_available: int
    def __init__(self, load1: _Optional[float] = ..., cpus: _Optional[int] = ..., memory_total: _Optional[int] = ..., memory_available: _Optional[int] = ...) -> None: ...

class ContainerList(_message.Message):
    __slots__ = ("containers",)
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[ContainerInfo]
    def __init__(self, containers: _Optional[_Iterable[_Union[ContainerInfo, _Mapping]]] = ...) -> None: ...

class GpuProcess(_message.Message):
    __slots__ = ("pid", "memory_used")
    PID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
    pid: int
    memory_used: int
    def __init__(self, pid: _Optional[int] = ..., memory_used: _Optional[int] = ...) -> None: ...

class GpuInfo(_message.Message):
    __slots__ = ("index", "uuid", "name", "memory_total", "memory_used", "utilization", "temperature", "power_w", "processes", "container_id", "run_id", "session", "partition", "node", "in_use")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    index: int
    uuid: str
    name: str
    memory_total: int
    memory_used: int
    utilization: int
    temperature: int
    power_w: float
    processes: _containers.RepeatedCompositeFieldContainer[GpuProcess]
    container_id: str
    run_id: str
    session: str
    partition: str
    node: str
    in_use: bool
    def __init__(self, index: _Optional[int] = ..., uuid: _Optional[str] = ..., name: _Optional[str] = ..., memory_total: _Optional[int] = ..., memory_used: _Optional[int] = ..., utilization: _Optional[int] = ..., temperature: _Optional[int] = ..., power_w: _Optional[float] = ..., processes: _Optional[_Iterable[_Union[GpuProcess, _Mapping]]] = ..., container_id: _Optional[str] = ..., run_id: _Optional[str] = ..., session: _Optional[str] = ..., partition: _Optional[str] = ..., node: _Optional[str] = ..., in_use: _Optional[bool] = ...) -> None: ...

class GpuList(_message.Message):
    __slots__ = ("gpus",)
    GPUS_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuInfo]
    def __init__(self, gpus: _Optional[_Iterable[_Union[GpuInfo, _Mapping]]] = ...) -> None: ...

class Execute(_message.Message):
    __slots__ = ("run_id", "kind", "payload", "code", "filename", "first_line", "timeout_s", "keep_namespace", "max_result_bytes", "client_python", "cwd", "payload_path", "generator", "debug_sources", "cluster_env")
    class DebugSourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ClusterEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    KEEP_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PYTHON_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_PATH_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    DEBUG_SOURCES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ENV_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    kind: RunKind
    payload: bytes
    code: str
    filename: str
    first_line: int
    timeout_s: float
    keep_namespace: bool
    max_result_bytes: int
    client_python: str
    cwd: str
    payload_path: str
    generator: bool
    debug_sources: _containers.ScalarMap[str, str]
    cluster_env: _containers.ScalarMap[str, str]
    def __init__(self, run_id: _Optional[str] = ..., kind: _Optional[_Union[RunKind, str]] = ..., payload: _Optional[bytes] = ..., code: _Optional[str] = ..., filename: _Optional[str] = ..., first_line: _Optional[int] = ..., timeout_s: _Optional[float] = ..., keep_namespace: _Optional[bool] = ..., max_result_bytes: _Optional[int] = ..., client_python: _Optional[str] = ..., cwd: _Optional[str] = ..., payload_path: _Optional[str] = ..., generator: _Optional[bool] = ..., debug_sources: _Optional[_Mapping[str, str]] = ..., cluster_env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FetchValue(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ToContainer(_message.Message):
    __slots__ = ("execute", "fetch_value", "input_answer", "exec")
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    FETCH_VALUE_FIELD_NUMBER: _ClassVar[int]
    INPUT_ANSWER_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    execute: Execute
    fetch_value: FetchValue
    input_answer: InputAnswer
    exec: ExecToContainer
    def __init__(self, execute: _Optional[_Union[Execute, _Mapping]] = ..., fetch_value: _Optional[_Union[FetchValue, _Mapping]] = ..., input_answer: _Optional[_Union[InputAnswer, _Mapping]] = ..., exec: _Optional[_Union[ExecToContainer, _Mapping]] = ...) -> None: ...

class ContainerReady(_message.Message):
    __slots__ = ("pid", "python", "cluster_addresses", "cluster_free_port", "cluster_host_name", "mount_error")
    PID_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FREE_PORT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_HOST_NAME_FIELD_NUMBER: _ClassVar[int]
    MOUNT_ERROR_FIELD_NUMBER: _ClassVar[int]
    pid: int
    python: str
    cluster_addresses: _containers.RepeatedScalarFieldContainer[str]
    cluster_free_port: int
    cluster_host_name: str
    mount_error: str
    def __init__(self, pid: _Optional[int] = ..., python: _Optional[str] = ..., cluster_addresses: _Optional[_Iterable[str]] = ..., cluster_free_port: _Optional[int] = ..., cluster_host_name: _Optional[str] = ..., mount_error: _Optional[str] = ...) -> None: ...

class FromContainer(_message.Message):
    __slots__ = ("ready", "output", "display", "finished", "fetched", "item", "input_started", "input_request", "exec")
    READY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FETCHED_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    INPUT_STARTED_FIELD_NUMBER: _ClassVar[int]
    INPUT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    ready: ContainerReady
    output: Output
    display: Display
    finished: RunFinished
    fetched: FetchValueReply
    item: Item
    input_started: InputStarted
    input_request: InputRequest
    exec: ExecFromContainer
    def __init__(self, ready: _Optional[_Union[ContainerReady, _Mapping]] = ..., output: _Optional[_Union[Output, _Mapping]] = ..., display: _Optional[_Union[Display, _Mapping]] = ..., finished: _Optional[_Union[RunFinished, _Mapping]] = ..., fetched: _Optional[_Union[FetchValueReply, _Mapping]] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., input_started: _Optional[_Union[InputStarted, _Mapping]] = ..., input_request: _Optional[_Union[InputRequest, _Mapping]] = ..., exec: _Optional[_Union[ExecFromContainer, _Mapping]] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("container_id", "argv", "env", "workdir", "pty", "rows", "cols", "timeout_s", "secrets")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    PTY_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    workdir: str
    pty: bool
    rows: int
    cols: int
    timeout_s: float
    secrets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, container_id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., workdir: _Optional[str] = ..., pty: _Optional[bool] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., timeout_s: _Optional[float] = ..., secrets: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecResize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExecInput(_message.Message):
    __slots__ = ("start", "stdin", "stdin_eof", "resize", "signal", "kill", "output_ack")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_EOF_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    stdin: bytes
    stdin_eof: bool
    resize: ExecResize
    signal: int
    kill: bool
    output_ack: int
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdin_eof: _Optional[bool] = ..., resize: _Optional[_Union[ExecResize, _Mapping]] = ..., signal: _Optional[int] = ..., kill: _Optional[bool] = ..., output_ack: _Optional[int] = ...) -> None: ...

class ExecStarted(_message.Message):
    __slots__ = ("exec_id", "pid")
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    pid: int
    def __init__(self, exec_id: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class ExecExited(_message.Message):
    __slots__ = ("exit_code", "signal", "error")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    signal: int
    error: str
    def __init__(self, exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ExecOutput(_message.Message):
    __slots__ = ("started", "output", "exited")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    started: ExecStarted
    output: Output
    exited: ExecExited
    def __init__(self, started: _Optional[_Union[ExecStarted, _Mapping]] = ..., output: _Optional[_Union[Output, _Mapping]] = ..., exited: _Optional[_Union[ExecExited, _Mapping]] = ...) -> None: ...

class ExecToContainer(_message.Message):
    __slots__ = ("exec_id", "input")
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    input: ExecInput
    def __init__(self, exec_id: _Optional[str] = ..., input: _Optional[_Union[ExecInput, _Mapping]] = ...) -> None: ...

class ExecFromContainer(_message.Message):
    __slots__ = ("exec_id", "output")
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    output: ExecOutput
    def __init__(self, exec_id: _Optional[str] = ..., output: _Optional[_Union[ExecOutput, _Mapping]] = ...) -> None: ...

class ExecLogsRequest(_message.Message):
    __slots__ = ("container_id", "follow")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    follow: bool
    def __init__(self, container_id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class SecretSource(_message.Message):
    __slots__ = ("name", "values", "required_keys")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_KEYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.ScalarMap[str, str]
    required_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Mapping[str, str]] = ..., required_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class SecretRequest(_message.Message):
    __slots__ = ("op", "name", "values", "force")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    op: SecretOp
    name: str
    values: _containers.ScalarMap[str, str]
    force: bool
    def __init__(self, op: _Optional[_Union[SecretOp, str]] = ..., name: _Optional[str] = ..., values: _Optional[_Mapping[str, str]] = ..., force: _Optional[bool] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("name", "keys", "created")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    created: float
    def __init__(self, name: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., created: _Optional[float] = ...) -> None: ...

class SecretReply(_message.Message):
    __slots__ = ("secrets", "replaced")
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    replaced: bool
    def __init__(self, secrets: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ..., replaced: _Optional[bool] = ...) -> None: ...

class WebAccess(_message.Message):
    __slots__ = ("proxy_base", "host")
    PROXY_BASE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    proxy_base: str
    host: str
    def __init__(self, proxy_base: _Optional[str] = ..., host: _Optional[str] = ...) -> None: ...

class TunnelRequest(_message.Message):
    __slots__ = ("op", "port", "name", "kind", "label", "tunnel_id")
    OP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_ID_FIELD_NUMBER: _ClassVar[int]
    op: TunnelOp
    port: int
    name: str
    kind: str
    label: str
    tunnel_id: str
    def __init__(self, op: _Optional[_Union[TunnelOp, str]] = ..., port: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., label: _Optional[str] = ..., tunnel_id: _Optional[str] = ...) -> None: ...

class TunnelInfo(_message.Message):
    __slots__ = ("tunnel_id", "name", "port", "run_id", "container_id", "kind", "label", "created", "live", "ended", "url", "host", "run_label")
    TUNNEL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    RUN_LABEL_FIELD_NUMBER: _ClassVar[int]
    tunnel_id: str
    name: str
    port: int
    run_id: str
    container_id: str
    kind: str
    label: str
    created: float
    live: bool
    ended: str
    url: str
    host: str
    run_label: str
    def __init__(self, tunnel_id: _Optional[str] = ..., name: _Optional[str] = ..., port: _Optional[int] = ..., run_id: _Optional[str] = ..., container_id: _Optional[str] = ..., kind: _Optional[str] = ..., label: _Optional[str] = ..., created: _Optional[float] = ..., live: _Optional[bool] = ..., ended: _Optional[str] = ..., url: _Optional[str] = ..., host: _Optional[str] = ..., run_label: _Optional[str] = ...) -> None: ...

class TunnelReply(_message.Message):
    __slots__ = ("tunnels", "tunnel")
    TUNNELS_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_FIELD_NUMBER: _ClassVar[int]
    tunnels: _containers.RepeatedCompositeFieldContainer[TunnelInfo]
    tunnel: TunnelInfo
    def __init__(self, tunnels: _Optional[_Iterable[_Union[TunnelInfo, _Mapping]]] = ..., tunnel: _Optional[_Union[TunnelInfo, _Mapping]] = ...) -> None: ...

class DeployRef(_message.Message):
    __slots__ = ("app", "function")
    APP_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    app: str
    function: str
    def __init__(self, app: _Optional[str] = ..., function: _Optional[str] = ...) -> None: ...

class DeploySchedule(_message.Message):
    __slots__ = ("period_s", "period_months", "cron", "timezone")
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    PERIOD_MONTHS_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    period_s: float
    period_months: int
    cron: str
    timezone: str
    def __init__(self, period_s: _Optional[float] = ..., period_months: _Optional[int] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ...) -> None: ...

class DeployFunction(_message.Message):
    __slots__ = ("name", "is_class", "pickle", "spec", "timeout_s", "schedule", "methods", "parameters", "parameter_defaults", "retry_delays", "max_containers", "max_inputs", "generator", "secrets", "web")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_CLASS_FIELD_NUMBER: _ClassVar[int]
    PICKLE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUTS_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    WEB_FIELD_NUMBER: _ClassVar[int]
    name: str
    is_class: bool
    pickle: bytes
    spec: ContainerSpec
    timeout_s: float
    schedule: DeploySchedule
    methods: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.RepeatedScalarFieldContainer[str]
    parameter_defaults: bytes
    retry_delays: _containers.RepeatedScalarFieldContainer[float]
    max_containers: int
    max_inputs: int
    generator: bool
    secrets: _containers.RepeatedCompositeFieldContainer[SecretSource]
    web: WebEndpointSpec
    def __init__(self, name: _Optional[str] = ..., is_class: _Optional[bool] = ..., pickle: _Optional[bytes] = ..., spec: _Optional[_Union[ContainerSpec, _Mapping]] = ..., timeout_s: _Optional[float] = ..., schedule: _Optional[_Union[DeploySchedule, _Mapping]] = ..., methods: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Iterable[str]] = ..., parameter_defaults: _Optional[bytes] = ..., retry_delays: _Optional[_Iterable[float]] = ..., max_containers: _Optional[int] = ..., max_inputs: _Optional[int] = ..., generator: _Optional[bool] = ..., secrets: _Optional[_Iterable[_Union[SecretSource, _Mapping]]] = ..., web: _Optional[_Union[WebEndpointSpec, _Mapping]] = ...) -> None: ...

class WebEndpointSpec(_message.Message):
    __slots__ = ("name", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class DeployRequest(_message.Message):
    __slots__ = ("app", "functions", "client_version", "deployed_from", "client_python")
    APP_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FROM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PYTHON_FIELD_NUMBER: _ClassVar[int]
    app: str
    functions: _containers.RepeatedCompositeFieldContainer[DeployFunction]
    client_version: str
    deployed_from: str
    client_python: str
    def __init__(self, app: _Optional[str] = ..., functions: _Optional[_Iterable[_Union[DeployFunction, _Mapping]]] = ..., client_version: _Optional[str] = ..., deployed_from: _Optional[str] = ..., client_python: _Optional[str] = ...) -> None: ...

class DeployReply(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: AppInfo
    def __init__(self, app: _Optional[_Union[AppInfo, _Mapping]] = ...) -> None: ...

class AppRequest(_message.Message):
    __slots__ = ("op", "app", "follow")
    OP_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    op: AppOp
    app: str
    follow: bool
    def __init__(self, op: _Optional[_Union[AppOp, str]] = ..., app: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class AppFunctionInfo(_message.Message):
    __slots__ = ("name", "is_class", "schedule", "next_run", "last_run_id", "last_run_state", "last_run_time", "definition")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_CLASS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    is_class: bool
    schedule: str
    next_run: float
    last_run_id: str
    last_run_state: RunState
    last_run_time: float
    definition: DeployFunction
    def __init__(self, name: _Optional[str] = ..., is_class: _Optional[bool] = ..., schedule: _Optional[str] = ..., next_run: _Optional[float] = ..., last_run_id: _Optional[str] = ..., last_run_state: _Optional[_Union[RunState, str]] = ..., last_run_time: _Optional[float] = ..., definition: _Optional[_Union[DeployFunction, _Mapping]] = ...) -> None: ...

class AppInfo(_message.Message):
    __slots__ = ("name", "version", "deployed", "deployed_at", "functions", "deployed_from", "stopped_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_AT_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FROM_FIELD_NUMBER: _ClassVar[int]
    STOPPED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    deployed: bool
    deployed_at: float
    functions: _containers.RepeatedCompositeFieldContainer[AppFunctionInfo]
    deployed_from: str
    stopped_at: float
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., deployed: _Optional[bool] = ..., deployed_at: _Optional[float] = ..., functions: _Optional[_Iterable[_Union[AppFunctionInfo, _Mapping]]] = ..., deployed_from: _Optional[str] = ..., stopped_at: _Optional[float] = ...) -> None: ...

class AppHistoryEntry(_message.Message):
    __slots__ = ("version", "time", "event", "functions", "client_version", "deployed_from")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FROM_FIELD_NUMBER: _ClassVar[int]
    version: str
    time: float
    event: str
    functions: _containers.RepeatedScalarFieldContainer[str]
    client_version: str
    deployed_from: str
    def __init__(self, version: _Optional[str] = ..., time: _Optional[float] = ..., event: _Optional[str] = ..., functions: _Optional[_Iterable[str]] = ..., client_version: _Optional[str] = ..., deployed_from: _Optional[str] = ...) -> None: ...

class AppReply(_message.Message):
    __slots__ = ("apps", "history")
    APPS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[AppInfo]
    history: _containers.RepeatedCompositeFieldContainer[AppHistoryEntry]
    def __init__(self, apps: _Optional[_Iterable[_Union[AppInfo, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[AppHistoryEntry, _Mapping]]] = ...) -> None: ...

class AppLogLine(_message.Message):
    __slots__ = ("time", "text")
    TIME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    time: float
    text: str
    def __init__(self, time: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class SandboxCreateRequest(_message.Message):
    __slots__ = ("spec", "argv", "app", "name", "timeout_s", "idle_timeout_s", "tags", "ports", "secrets")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    spec: ContainerSpec
    argv: _containers.RepeatedScalarFieldContainer[str]
    app: str
    name: str
    timeout_s: float
    idle_timeout_s: float
    tags: _containers.ScalarMap[str, str]
    ports: _containers.RepeatedScalarFieldContainer[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretSource]
    def __init__(self, spec: _Optional[_Union[ContainerSpec, _Mapping]] = ..., argv: _Optional[_Iterable[str]] = ..., app: _Optional[str] = ..., name: _Optional[str] = ..., timeout_s: _Optional[float] = ..., idle_timeout_s: _Optional[float] = ..., tags: _Optional[_Mapping[str, str]] = ..., ports: _Optional[_Iterable[int]] = ..., secrets: _Optional[_Iterable[_Union[SecretSource, _Mapping]]] = ...) -> None: ...

class SandboxInfo(_message.Message):
    __slots__ = ("sandbox_id", "container_id", "state", "returncode", "app", "name", "tags", "argv", "created", "finished", "timeout_s", "idle_timeout_s", "last_active", "error", "workdir", "ports", "spec", "hostname")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RETURNCODE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    container_id: str
    state: SandboxState
    returncode: int
    app: str
    name: str
    tags: _containers.ScalarMap[str, str]
    argv: _containers.RepeatedScalarFieldContainer[str]
    created: float
    finished: float
    timeout_s: float
    idle_timeout_s: float
    last_active: float
    error: str
    workdir: str
    ports: _containers.RepeatedScalarFieldContainer[int]
    spec: ContainerSpec
    hostname: str
    def __init__(self, sandbox_id: _Optional[str] = ..., container_id: _Optional[str] = ..., state: _Optional[_Union[SandboxState, str]] = ..., returncode: _Optional[int] = ..., app: _Optional[str] = ..., name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., argv: _Optional[_Iterable[str]] = ..., created: _Optional[float] = ..., finished: _Optional[float] = ..., timeout_s: _Optional[float] = ..., idle_timeout_s: _Optional[float] = ..., last_active: _Optional[float] = ..., error: _Optional[str] = ..., workdir: _Optional[str] = ..., ports: _Optional[_Iterable[int]] = ..., spec: _Optional[_Union[ContainerSpec, _Mapping]] = ..., hostname: _Optional[str] = ...) -> None: ...

class SandboxRequest(_message.Message):
    __slots__ = ("op", "sandbox_id", "app", "tags", "timeout_s")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OP_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    op: SandboxOp
    sandbox_id: str
    app: str
    tags: _containers.ScalarMap[str, str]
    timeout_s: float
    def __init__(self, op: _Optional[_Union[SandboxOp, str]] = ..., sandbox_id: _Optional[str] = ..., app: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class SandboxReply(_message.Message):
    __slots__ = ("sandbox", "sandboxes")
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    SANDBOXES_FIELD_NUMBER: _ClassVar[int]
    sandbox: SandboxInfo
    sandboxes: _containers.RepeatedCompositeFieldContainer[SandboxInfo]
    def __init__(self, sandbox: _Optional[_Union[SandboxInfo, _Mapping]] = ..., sandboxes: _Optional[_Iterable[_Union[SandboxInfo, _Mapping]]] = ...) -> None: ...

class SandboxOutputRequest(_message.Message):
    __slots__ = ("sandbox_id", "stream", "offset", "follow")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    stream: Stream
    offset: int
    follow: bool
    def __init__(self, sandbox_id: _Optional[str] = ..., stream: _Optional[_Union[Stream, str]] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class SandboxStdinRequest(_message.Message):
    __slots__ = ("sandbox_id", "data", "eof")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    data: bytes
    eof: bool
    def __init__(self, sandbox_id: _Optional[str] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class SandboxFileRequest(_message.Message):
    __slots__ = ("sandbox_id", "op", "path", "data", "flag")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    op: SandboxFileOp
    path: str
    data: bytes
    flag: bool
    def __init__(self, sandbox_id: _Optional[str] = ..., op: _Optional[_Union[SandboxFileOp, str]] = ..., path: _Optional[str] = ..., data: _Optional[bytes] = ..., flag: _Optional[bool] = ...) -> None: ...

class SandboxFileReply(_message.Message):
    __slots__ = ("data", "names", "kind", "error", "error_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    names: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    error: str
    error_type: str
    def __init__(self, data: _Optional[bytes] = ..., names: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ..., error: _Optional[str] = ..., error_type: _Optional[str] = ...) -> None: ...

class ClusterMember(_message.Message):
    __slots__ = ("cluster_id", "rank", "size", "assemble_timeout_s", "ranks_here", "index_here")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ASSEMBLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RANKS_HERE_FIELD_NUMBER: _ClassVar[int]
    INDEX_HERE_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    rank: int
    size: int
    assemble_timeout_s: float
    ranks_here: int
    index_here: int
    def __init__(self, cluster_id: _Optional[str] = ..., rank: _Optional[int] = ..., size: _Optional[int] = ..., assemble_timeout_s: _Optional[float] = ..., ranks_here: _Optional[int] = ..., index_here: _Optional[int] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ClusterMemberStatus(_message.Message):
    __slots__ = ("run_id", "ready", "addresses", "free_port", "waiting", "done", "host_name")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    FREE_PORT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    HOST_NAME_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    ready: bool
    addresses: _containers.RepeatedScalarFieldContainer[str]
    free_port: int
    waiting: str
    done: bool
    host_name: str
    def __init__(self, run_id: _Optional[str] = ..., ready: _Optional[bool] = ..., addresses: _Optional[_Iterable[str]] = ..., free_port: _Optional[int] = ..., waiting: _Optional[str] = ..., done: _Optional[bool] = ..., host_name: _Optional[str] = ...) -> None: ...

class ClusterStatusReply(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[ClusterMemberStatus]
    def __init__(self, members: _Optional[_Iterable[_Union[ClusterMemberStatus, _Mapping]]] = ...) -> None: ...

class ClusterGoRequest(_message.Message):
    __slots__ = ("run_id", "env")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    env: _containers.ScalarMap[str, str]
    def __init__(self, run_id: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...
