"""Read a TensorFlow checkpoint's tensors without importing TensorFlow.

Importing TensorFlow takes 2-4 s here, longer than the first characters may
wait.  A TF checkpoint is a LevelDB-style table (<prefix>.index) of
BundleEntryProto records pointing into <prefix>.data-*; the few fields needed
are decoded below.  Anything unexpected raises, and the sampler falls back
to restoring through TensorFlow (charrnn.runs.load_run).
"""

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 9: "<i8"}


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return result, i
        shift += 7


def _proto_fields(buf):
    """Yield (field number, value) of a protobuf message (varint and bytes fields)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        kind = key & 7
        if kind == 0:
            value, i = _varint(buf, i)
        elif kind == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif kind == 5:
            value, i = buf[i:i + 4], i + 4
        elif kind == 1:
            value, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"protobuf wire type {kind}")
        yield key >> 3, value


def _block_entries(data, offset, size):
    if data[offset + size] != 0:  # trailer: compression type; bundles are uncompressed
        raise ValueError("compressed checkpoint table")
    block = data[offset:offset + size]
    restarts = int.from_bytes(block[-4:], "little")
    end, i, key = len(block) - 4 - 4 * restarts, 0, b""
    while i < end:
        shared, i = _varint(block, i)
        unshared, i = _varint(block, i)
        vlen, i = _varint(block, i)
        key = key[:shared] + block[i:i + unshared]
        i += unshared
        yield key, block[i:i + vlen]
        i += vlen


def read_checkpoint(prefix) -> dict:
    """{name: array} of every numeric tensor in checkpoint ``prefix``, plus the
    object graph (serialized proto bytes) under ``_CHECKPOINTABLE_OBJECT_GRAPH``."""
    with open(f"{prefix}.index", "rb") as f:
        index = f.read()
    if int.from_bytes(index[-8:], "little") != _TABLE_MAGIC:
        raise ValueError("not a checkpoint index")
    footer = index[-48:]
    _, i = _varint(footer, 0)
    _, i = _varint(footer, i)  # skip the metaindex handle
    off, i = _varint(footer, i)
    size, _ = _varint(footer, i)
    entries = {}
    for _, handle in _block_entries(index, off, size):
        boff, j = _varint(handle, 0)
        bsize, _ = _varint(handle, j)
        entries.update(_block_entries(index, boff, bsize))
    header = dict(_proto_fields(entries.pop(b"")))
    shards = header.get(1, 1)
    files, tensors = {}, {}
    for name, value in entries.items():
        e = dict(_proto_fields(value))  # dtype, shape, shard_id, offset, size
        if 7 in e or (e.get(1) not in _DTYPES and name != b"_CHECKPOINTABLE_OBJECT_GRAPH"):
            continue  # sliced tensors, other strings: not weights
        shape = [dict(_proto_fields(d)).get(1, 0) for n, d in _proto_fields(e.get(2, b"")) if n == 2]
        shard = e.get(3, 0)
        if shard not in files:
            files[shard] = np.memmap(f"{prefix}.data-{shard:05d}-of-{shards:05d}", np.uint8, "r")
        raw = files[shard][e.get(4, 0):e.get(4, 0) + e.get(5, 0)]
        if e.get(1) in _DTYPES:
            tensors[name.decode()] = np.frombuffer(raw, _DTYPES[e[1]]).reshape(shape).copy()
        else:  # a scalar string: varint length, 4-byte checksum of the lengths, bytes
            raw = bytes(raw)
            n, j = _varint(raw, 0)
            tensors[name.decode()] = raw[j + 4:j + 4 + n]
    return tensors


def object_paths(graph: bytes):
    """A function "model/lstm_0/cell/kernel" -> checkpoint key, from a TrackableObjectGraph proto.

    A variable is stored once, under whichever path the saver met first (with
    an optimizer in the checkpoint, often optimizer/_trainable_variables/N), so
    names must be resolved through the graph, not guessed."""
    nodes = []
    for field, node in _proto_fields(graph):
        if field != 1:
            continue
        children, attrs = [], {}
        for f, v in _proto_fields(node):
            if f == 1:  # ObjectReference: node_id, local_name
                ref = dict(_proto_fields(v))
                children.append((ref.get(2, b"").decode(), ref.get(1, 0)))
            elif f == 2:  # SerializedTensor: name, full_name, checkpoint_key
                t = dict(_proto_fields(v))
                attrs[t.get(1, b"").decode()] = t.get(3, b"").decode()
        nodes.append((children, attrs))

    def key(path):
        node = 0
        for name in path.split("/"):
            node = dict(nodes[node][0])[name]
        return nodes[node][1]["VARIABLE_VALUE"]

    return key
