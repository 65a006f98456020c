#!/usr/bin/python3
"""BASELINE, not part of lamp-agent: a LAMPI-style lamp service in Python with paho-mqtt.

This is the design a user would write instead of lamp-agent (the shape of LAMPI's lamp_service.py):
one paho client, a Will on the presence topic, presence 1 and the whole state on connect, and for every
command: parse the JSON, update the state, write the pins, publish the state (QoS 1, retained).
No coalescing, no validation beyond the types, no state file. Two departures from LAMPI, both in its
favour for the benchmark: a persistent session (clean_session=False) so it receives a backlog queued
while it was offline, and Nagle disabled on its socket (the broker runs with set_tcp_nodelay).

Run with Debian's python3-paho-mqtt (1.6): /usr/bin/python3 bench/lampi_baseline.py
Environment: MQTT_URL, LAMP_ID, MOCK_GPIO_TRACE (same line format as the agent's mock driver).
"""

import colorsys
import json
import os
import signal
import socket
import sys
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

URL = urlparse(os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
LAMP_ID = os.environ.get("LAMP_ID", "python")
CLIENT_ID = "python-" + LAMP_ID
BASE = "lamp/" + LAMP_ID
PRESENCE = "state/" + LAMP_ID
TRACE = os.environ.get("MOCK_GPIO_TRACE")
PINS = (19, 26, 13)
GAMMA = 2.2
STARTED = time.monotonic()


class LampService:
    def __init__(self):
        self.on = True
        self.h = 0.0
        self.s = 0.0
        self.brightness = 1.0
        self.last_client = CLIENT_ID
        self.trace = open(TRACE, "a") if TRACE else None
        self.client = mqtt.Client(client_id=CLIENT_ID, clean_session=False)
        self.client.will_set(PRESENCE, "0", qos=1, retain=True)
        self.client.on_connect = self.on_connect
        self.client.message_callback_add(BASE + "/set_config", self.on_set_config)
        self.write_pins()

    def on_connect(self, client, userdata, flags, rc):
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.publish(PRESENCE, "1", qos=1, retain=True)
        client.subscribe(BASE + "/set_config", qos=1)
        self.publish_state()

    def on_set_config(self, client, userdata, msg):
        try:
            config = json.loads(msg.payload.decode("utf-8"))
            if "on" in config:
                self.on = bool(config["on"])
            if "color" in config:
                self.h = float(config["color"].get("h", self.h))
                self.s = float(config["color"].get("s", self.s))
            if "brightness" in config:
                self.brightness = float(config["brightness"])
            self.last_client = config.get("client")
        except (ValueError, TypeError, AttributeError) as error:
            print("invalid command:", error, file=sys.stderr)
            return
        self.write_pins()
        self.publish_state()

    def write_pins(self):
        rgb = colorsys.hsv_to_rgb(self.h, self.s, self.brightness) if self.on else (0, 0, 0)
        duties = [level**GAMMA for level in rgb]
        if self.trace:
            t = round((time.monotonic() - STARTED) * 1000, 3)
            for pin, duty in zip(PINS, duties):
                self.trace.write(json.dumps({"t": t, "pin": pin, "duty": duty}) + "\n")
            self.trace.flush()

    def publish_state(self):
        state = {
            "on": self.on,
            "color": {"h": self.h, "s": self.s},
            "brightness": self.brightness,
            "client": self.last_client,
        }
        self.client.publish(BASE + "/changed", json.dumps(state), qos=1, retain=True)

    def run(self):
        self.client.connect(URL.hostname, URL.port or 1883, keepalive=10)
        self.client.loop_forever()


def stop(signum, frame):
    # Queued before DISCONNECT, so the broker gets it; loop_forever() returns once both are written.
    service.client.publish(PRESENCE, "0", qos=1, retain=True)
    service.client.disconnect()


service = LampService()
signal.signal(signal.SIGTERM, stop)
service.run()
