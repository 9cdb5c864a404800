"""The public DataStream API: everything a job author imports, Flink's names in Python style."""

from streamjob.worker.api.datastream import DataStream, DataStreamSink, KeyedStream
from streamjob.worker.api.environment import (
    CheckpointConfig,
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    RestartStrategies,
    StateBackend,
    StreamExecutionEnvironment,
)
from streamjob.worker.api.functions import (
    CheckpointedFunction,
    CheckpointListener,
    Collector,
    FilterFunction,
    FlatMapFunction,
    FunctionInitializationContext,
    FunctionSnapshotContext,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    RichFilterFunction,
    RichFlatMapFunction,
    RichFunction,
    RichMapFunction,
    RuntimeContext,
)
from streamjob.worker.api.sinks import (
    DiscardingSink,
    PrintSink,
    RichSinkFunction,
    SinkFunction,
    TwoPhaseCommitSinkFunction,
)
from streamjob.worker.api.sources import (
    CollectionSource,
    DataGeneratorSource,
    NumberSequenceSource,
    ParallelSourceFunction,
    RichParallelSourceFunction,
    RichSourceFunction,
    Source,
    SourceContext,
    SourceFunction,
    SourceReader,
    SourceReaderContext,
)
from streamjob.worker.api.state import (
    AggregateFunction,
    AggregatingState,
    AggregatingStateDescriptor,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    PickleSerializer,
    ReduceFunction,
    ReducingState,
    ReducingStateDescriptor,
    SafeSerializer,
    ValueState,
    ValueStateDescriptor,
)
from streamjob.worker.api.windows import (
    ProcessWindowFunction,
    Time,
    TimeWindow,
    TumblingProcessingTimeWindows,
    WindowContext,
)
from streamjob.worker.config import CheckpointingMode, ExternalizedCheckpointCleanup

__all__ = [
    "AggregateFunction", "AggregatingState", "AggregatingStateDescriptor", "CheckpointConfig", "CheckpointListener",
    "CheckpointedFunction", "CheckpointingMode", "CollectionSource", "Collector", "DataGeneratorSource",
    "DataStream", "DataStreamSink", "DiscardingSink", "EmbeddedRocksDBStateBackend", "ExternalizedCheckpointCleanup",
    "FilterFunction", "FlatMapFunction", "FunctionInitializationContext", "FunctionSnapshotContext",
    "HashMapStateBackend", "KeySelector", "KeyedProcessFunction", "KeyedStream", "ListState", "ListStateDescriptor",
    "MapFunction", "MapState", "MapStateDescriptor", "NumberSequenceSource", "ParallelSourceFunction",
    "PickleSerializer", "PrintSink", "ProcessFunction", "ProcessWindowFunction", "ReduceFunction", "ReducingState",
    "ReducingStateDescriptor", "RestartStrategies", "RichFilterFunction", "RichFlatMapFunction", "RichFunction",
    "RichMapFunction", "RichParallelSourceFunction", "RichSinkFunction", "RichSourceFunction", "RuntimeContext",
    "SafeSerializer", "SinkFunction", "Source", "SourceContext", "SourceFunction", "SourceReader",
    "SourceReaderContext", "StateBackend", "StreamExecutionEnvironment", "Time", "TimeWindow",
    "TumblingProcessingTimeWindows", "TwoPhaseCommitSinkFunction", "ValueState", "ValueStateDescriptor",
    "WindowContext",
]
