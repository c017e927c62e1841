"""Crew factories for runq's Go tests: objects with kickoff(inputs=...),
no CrewAI, so the worker processes start in a fraction of a second."""

import os
import time


class Echo:
    def kickoff(self, inputs):
        if inputs.get("fail"):
            raise ValueError("asked to fail: " + str(inputs["fail"]))
        spin = float(inputs.get("spin", 0))
        end = time.time() + spin
        while time.time() < end:  # interruptible, unlike one long sleep
            time.sleep(0.01)
        if inputs.get("block"):
            time.sleep(float(inputs["block"]))  # one C call: not interruptible
        return {"echo": inputs, "pid": os.getpid()}


def echo():
    return Echo()


def broken():
    raise RuntimeError("the factory itself fails")
