"""How values are stored: msgpack (bytes as bin, strings as str)."""
import msgpack


def pack(value):
    return msgpack.packb(value, use_bin_type=True)


def unpack(raw):
    return None if raw is None else msgpack.unpackb(raw, raw=False)



def text(raw):
    """A string read raw from Redis (bytes), as str; str and None as they are."""
    return raw.decode() if isinstance(raw, bytes) else raw
