#!/usr/bin/env python3
"""A lookout-wire reader in plain Python (standard library only), written from README.md.

    python3 lookout_wire.py < capture.bin          # or: lookout_wire.py /dev/ttyUSB0
prints one JSON line per frame. Decodes every body kind; a frame that fails COBS, the CRC or
the version check is reported on stderr and skipped.
"""
import json
import sys
import zlib

VERSION = 1


def cobs_decode(data):
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            raise ValueError("bad COBS")
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def u8(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self):
        shift = value = 0
        while True:
            b = self.u8()
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    def signed(self):
        v = self.varint()
        return (v >> 1) ^ -(v & 1)  # zigzag

    def option(self, read):
        return read() if self.u8() else None

    def seq(self, read):
        return [read() for _ in range(self.varint())]

    def string(self):
        n = self.varint()
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def pixel_box(r):
    return [r.varint() for _ in range(4)]


def detection(r):
    return {"class_id": r.varint(), "score": r.varint() / 65535, "box": pixel_box(r),
            "track_id": r.option(r.varint)}


def track_event(r):
    return {"track_id": r.varint(), "event": ["new", "update", "lost", "end"][r.varint()],
            "class_id": r.varint(), "score": r.varint() / 65535, "box": pixel_box(r),
            "velocity_px_s": [r.signed(), r.signed()]}


def mask(r):
    m = {"object_id": r.varint(), "class_id": r.varint(), "score": r.varint() / 65535,
         "box": pixel_box(r)}
    if r.varint() == 0:
        m["rle"] = {"width": r.varint(), "height": r.varint(), "runs": r.seq(r.varint)}
    else:
        m["polygon"] = r.seq(lambda: [r.signed(), r.signed()])
    return m


def lidar_object(r):
    return {"class_id": r.varint(), "score": r.varint() / 65535,
            "center_mm": [r.signed() for _ in range(3)], "size_mm": [r.varint() for _ in range(3)],
            "yaw_mrad": r.signed(), "points": r.varint()}


BODIES = [
    ("detections", lambda r: {"width": r.varint(), "height": r.varint(), "detections": r.seq(lambda: detection(r))}),
    ("tracks", lambda r: {"events": r.seq(lambda: track_event(r))}),
    ("mask", mask),
    ("lidar", lambda r: {"objects": r.seq(lambda: lidar_object(r))}),
    ("status", lambda r: {"online": bool(r.u8()), "uptime_s": r.varint(), "fps_centi": r.varint(),
                          "frames_dropped": r.varint(), "messages_dropped": r.varint(),
                          "temperature_centi_c": r.option(r.signed), "throttled": r.varint()}),
    ("classes", lambda r: {"model": r.string(), "total_classes": r.varint(),
                           "first_class_id": r.varint(), "names": r.seq(r.string)}),
]


def decode_frame(encoded):
    raw = cobs_decode(encoded)
    if len(raw) < 5:
        raise ValueError("too short")
    payload, crc = raw[:-4], int.from_bytes(raw[-4:], "little")
    if zlib.crc32(payload) != crc:
        raise ValueError("CRC mismatch")
    r = Reader(payload)
    version = r.u8()
    if version != VERSION:
        raise ValueError(f"protocol version {version}")
    header = {"device_id": r.varint(), "sequence": r.varint(), "timestamp_us": r.varint(),
              "frame_id": r.varint()}
    kind = r.varint()
    if kind >= len(BODIES):
        raise ValueError(f"unknown body kind {kind}")
    name, read = BODIES[kind]
    body = read(r)
    if r.pos != len(payload):
        raise ValueError("trailing bytes")
    return {"kind": name, **header, "body": body}


def frames(stream):
    buf = bytearray()
    for chunk in stream:
        for b in chunk:
            if b:
                buf.append(b)
            elif buf:
                yield bytes(buf)
                buf.clear()


def main():
    src = open(sys.argv[1], "rb", buffering=0) if len(sys.argv) > 1 else sys.stdin.buffer
    for f in frames(iter(lambda: src.read(4096), b"")):
        try:
            print(json.dumps(decode_frame(f)), flush=True)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            print(f"frame rejected: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
