from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class FeaturesRequest(_message.Message):
    __slots__ = ("id", "tensor", "timeout_us")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_US_FIELD_NUMBER: _ClassVar[int]
    id: int
    tensor: Tensor
    timeout_us: int
    def __init__(self, id: _Optional[int] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., timeout_us: _Optional[int] = ...) -> None: ...

class FeaturesReply(_message.Message):
    __slots__ = ("id", "features", "compute_us", "code", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_US_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    features: Tensor
    compute_us: int
    code: int
    error: str
    def __init__(self, id: _Optional[int] = ..., features: _Optional[_Union[Tensor, _Mapping]] = ..., compute_us: _Optional[int] = ..., code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("shape", "dtype", "data", "layout")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    layout: str
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ..., layout: _Optional[str] = ...) -> None: ...

class NodeTiming(_message.Message):
    __slots__ = ("index", "address", "compute_ms", "round_trip_ms", "bytes_sent", "bytes_received", "missing", "error", "batch_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    ROUND_TRIP_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    address: str
    compute_ms: float
    round_trip_ms: float
    bytes_sent: int
    bytes_received: int
    missing: bool
    error: str
    batch_size: int
    def __init__(self, index: _Optional[int] = ..., address: _Optional[str] = ..., compute_ms: _Optional[float] = ..., round_trip_ms: _Optional[float] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., missing: _Optional[bool] = ..., error: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "class_name", "probabilities", "logits", "nodes", "bytes_sent", "bytes_received", "degraded", "missing_nodes", "gateway_ms", "head_ms")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    MISSING_NODES_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_MS_FIELD_NUMBER: _ClassVar[int]
    HEAD_MS_FIELD_NUMBER: _ClassVar[int]
    label: int
    class_name: str
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    logits: _containers.RepeatedScalarFieldContainer[float]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeTiming]
    bytes_sent: int
    bytes_received: int
    degraded: bool
    missing_nodes: _containers.RepeatedScalarFieldContainer[str]
    gateway_ms: float
    head_ms: float
    def __init__(self, label: _Optional[int] = ..., class_name: _Optional[str] = ..., probabilities: _Optional[_Iterable[float]] = ..., logits: _Optional[_Iterable[float]] = ..., nodes: _Optional[_Iterable[_Union[NodeTiming, _Mapping]]] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ..., degraded: _Optional[bool] = ..., missing_nodes: _Optional[_Iterable[str]] = ..., gateway_ms: _Optional[float] = ..., head_ms: _Optional[float] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("input_shape", "classes")
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, input_shape: _Optional[_Iterable[int]] = ..., classes: _Optional[_Iterable[str]] = ...) -> None: ...

class ClassifyRequests(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ClassifyRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ClassifyRequest, _Mapping]]] = ...) -> None: ...

class ClassifyReplies(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[ClassifyReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[ClassifyReply, _Mapping]]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("id", "image", "timeout_us")
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_US_FIELD_NUMBER: _ClassVar[int]
    id: int
    image: Image
    timeout_us: int
    def __init__(self, id: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., timeout_us: _Optional[int] = ...) -> None: ...

class ClassifyReply(_message.Message):
    __slots__ = ("id", "prediction", "code", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    prediction: Prediction
    code: int
    error: str
    def __init__(self, id: _Optional[int] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
