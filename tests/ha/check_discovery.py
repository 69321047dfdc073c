#!/usr/bin/env python3
"""Checks lookout's Home Assistant MQTT discovery messages with Home Assistant's own code.

Reads `lookout listen --mqtt URL --topic 'homeassistant/#'` lines on stdin (JSON with a
`topic`), and for each discovery message checks, as Home Assistant's MQTT integration does
when it receives one: the topic against its discovery topic pattern and supported
components, and the payload against that component's DISCOVERY_SCHEMA (voluptuous). Also
checks what those schemas do not: unique ids are unique, and every entity names the
availability topic. Exits 1 with the reasons when anything is refused.

Needs the `homeassistant` package (`.ci/run` installs a pinned release in a venv).
"""

import json
import sys

from homeassistant.components.mqtt import binary_sensor, sensor
from homeassistant.components.mqtt.discovery import SUPPORTED_COMPONENTS, TOPIC_MATCHER
import homeassistant.const

SCHEMAS = {"binary_sensor": binary_sensor.DISCOVERY_SCHEMA, "sensor": sensor.DISCOVERY_SCHEMA}


def main() -> int:
    prefix = sys.argv[1] if len(sys.argv) > 1 else "homeassistant"
    problems, seen, ids = [], 0, {}
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        topic = message.pop("topic", "")
        if not topic.startswith(prefix + "/"):
            continue
        seen += 1
        match = TOPIC_MATCHER.fullmatch(topic[len(prefix) + 1 :])
        if not match:
            problems.append(f"{topic}: not a discovery topic Home Assistant accepts")
            continue
        component = match.group("component")
        if component not in SUPPORTED_COMPONENTS or component not in SCHEMAS:
            problems.append(f"{topic}: component {component} is not expected")
            continue
        try:
            config = SCHEMAS[component](message)
        except Exception as e:  # voluptuous.Invalid and its kin
            problems.append(f"{topic}: refused by Home Assistant's schema: {e}")
            continue
        uid = config.get("unique_id")
        if uid in ids:
            problems.append(f"{topic}: unique_id {uid} also used by {ids[uid]}")
        ids[uid] = topic
        if not config.get("availability_topic"):
            problems.append(f"{topic}: no availability topic")
        if not config.get("device", {}).get("identifiers"):
            problems.append(f"{topic}: no device identifiers")
    if seen == 0:
        problems.append("no discovery message was read")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    version = homeassistant.const.__version__
    print(f"{seen} discovery messages checked with Home Assistant {version}: "
          f"{'refused' if problems else 'all accepted'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
