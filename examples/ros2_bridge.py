#!/usr/bin/env python3
"""lookout -> ROS 2 vision_msgs: a small bridge, and the field-by-field mapping as code.

Reads lookout's JSON documents (docs/schema/lookout.schema.json), one per line, from stdin
or from MQTT through `lookout listen`, and turns `detections` into vision_msgs/Detection2DArray
and `lidar` into vision_msgs/Detection3DArray (ROS 2 Humble and later). With rclpy and
vision_msgs importable it publishes them (topics /lookout/detections and /lookout/objects3d);
without ROS, or with --print, it prints each message's fields as JSON, so the mapping can be
checked anywhere. docs/ros2.md explains every field.

  lookout listen --mqtt mqtt://robot.local:1883 | python3 examples/ros2_bridge.py
  python3 examples/ros2_bridge.py --mqtt mqtt://robot.local:1883 --print
"""

import argparse
import json
import math
import subprocess
import sys


def stamp(capture_us):
    """builtin_interfaces/Time from epoch microseconds."""
    return {"sec": capture_us // 1_000_000, "nanosec": (capture_us % 1_000_000) * 1000}


def header(doc, frame_id):
    return {"stamp": stamp(doc["capture_us"]), "frame_id": frame_id}


def hypothesis(class_id, name, score):
    # vision_msgs 4.x: ObjectHypothesisWithPose{hypothesis{class_id: string, score}, pose}.
    return {
        "hypothesis": {"class_id": name if name is not None else str(class_id), "score": score},
        "pose": {"pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                          "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}},
                 "covariance": [0.0] * 36},
    }


def detection2d_array(doc, frame_id):
    h = header(doc, frame_id)
    out = []
    for d in doc["detections"]:
        x1, y1, x2, y2 = d["box"]
        out.append({
            "header": h,
            "results": [hypothesis(d["class_id"], d["class"], d["score"])],
            "bbox": {"center": {"position": {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2}, "theta": 0.0},
                     "size_x": x2 - x1, "size_y": y2 - y1},
            "id": "" if d["track_id"] is None else str(d["track_id"]),
        })
    return {"header": h, "detections": out}


def detection3d_array(doc, frame_id):
    h = header(doc, frame_id)
    out = []
    for i, o in enumerate(doc["objects"]):
        x, y, z = o["center_m"]
        yaw = o["yaw_rad"]
        results = [] if o["class_id"] is None else [hypothesis(o["class_id"], o["class"], o["score"])]
        out.append({
            "header": h,
            "results": results,
            "bbox": {"center": {"position": {"x": x, "y": y, "z": z},
                                "orientation": {"x": 0.0, "y": 0.0,
                                                "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)}},
                     "size": dict(zip("xyz", o["size_m"]))},
            "id": str(i),
        })
    return {"header": h, "detections": out}


def lines(args):
    if not args.mqtt:
        yield from sys.stdin
        return
    listen = subprocess.Popen(
        [args.lookout, "listen", "--mqtt", args.mqtt, "--topic", args.topic],
        stdout=subprocess.PIPE, text=True)
    yield from listen.stdout


def ros_publisher():
    """Publishers when ROS 2 and vision_msgs are importable, else None."""
    try:
        import rclpy
        from rclpy_message_converter import message_converter  # noqa: F401 (optional helper)
        from vision_msgs.msg import Detection2DArray, Detection3DArray
    except ImportError:
        return None
    rclpy.init()
    node = rclpy.create_node("lookout_bridge")
    pubs = {"detections": (node.create_publisher(Detection2DArray, "/lookout/detections", 10),
                           "vision_msgs/msg/Detection2DArray"),
            "lidar": (node.create_publisher(Detection3DArray, "/lookout/objects3d", 10),
                      "vision_msgs/msg/Detection3DArray")}

    def publish(kind, fields):
        pub, type_name = pubs[kind]
        pub.publish(message_converter.convert_dictionary_to_ros_message(type_name, fields))
    return publish


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mqtt", help="broker URL; reads through `lookout listen`")
    p.add_argument("--topic", default="lookout/#")
    p.add_argument("--lookout", default="lookout", help="the lookout binary")
    p.add_argument("--camera-frame", default="camera", help="header.frame_id of 2D detections")
    p.add_argument("--lidar-frame", default="lidar", help="header.frame_id of 3D detections")
    p.add_argument("--print", action="store_true", help="print the fields even if ROS 2 is here")
    args = p.parse_args()
    publish = None if args.print else ros_publisher()
    for line in lines(args):
        line = line.strip()
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        kind = doc.get("kind")
        if kind == "detections":
            fields = detection2d_array(doc, args.camera_frame)
            type_name = "vision_msgs/msg/Detection2DArray"
        elif kind == "lidar":
            fields = detection3d_array(doc, args.lidar_frame)
            type_name = "vision_msgs/msg/Detection3DArray"
        else:
            continue
        if publish:
            publish(kind, fields)
        else:
            # age_us lets a consumer place the message on its own clock: now - age.
            print(json.dumps({"type": type_name, "age_us": doc.get("age_us"), "msg": fields}),
                  flush=True)


if __name__ == "__main__":
    main()
