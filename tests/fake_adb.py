"""TEST DOUBLE for the ``adb`` client: no phone is reachable from CI.

It records every argv it receives (one JSON list per line in $FAKE_ADB_LOG) and answers like
adb would: ``get-state``, ``devices -l``, ``push``/``pull``, ``shell getprop KEY``, and for the
benchmark run (a ``shell`` command starting with ``cd``) it replays a captured/documented
tool output ($FAKE_ADB_OUTPUT) with exit code $FAKE_ADB_EXIT. $FAKE_ADB_DROP=1 makes the run
fail the way adb does when the phone disconnects; $FAKE_ADB_HANG=N makes it hang N s. Standard library only.
"""

import json
import os
import sys

PROPS = {"ro.product.model": "Pixel 7", "ro.product.cpu.abi": "arm64-v8a",
         "ro.build.version.release": "14", "ro.soc.model": "Tensor G2"}
DEVICES = ("List of devices attached\n"
           "emulator-5554          device product:sdk_gphone64_arm64 model:sdk_gphone64_arm64 device:emu64a transport_id:1\n"
           "2A021FDH3000XY         unauthorized usb:1-1 transport_id:2\n\n")


def main(argv):
    with open(os.environ["FAKE_ADB_LOG"], "a") as fh:
        fh.write(json.dumps(argv) + "\n")
    args = argv[2:] if argv[:1] == ["-s"] else argv
    verb = args[0] if args else ""
    if verb == "get-state":
        print(os.environ.get("FAKE_ADB_STATE", "device"))
    elif verb == "devices":
        sys.stdout.write(DEVICES)
    elif verb in ("push", "pull"):
        print(f"{args[1]}: 1 file {verb}ed.")
    elif verb == "shell" and args[1].startswith("cd "):          # the benchmark run
        if os.environ.get("FAKE_ADB_HANG"):
            import time
            time.sleep(float(os.environ["FAKE_ADB_HANG"]))
        if os.environ.get("FAKE_ADB_DROP"):
            sys.stderr.write("error: closed\n")
            return 1
        with open(os.environ["FAKE_ADB_OUTPUT"]) as fh:
            sys.stdout.write(fh.read())
        return int(os.environ.get("FAKE_ADB_EXIT", "0"))
    elif verb == "shell" and args[1].startswith("getprop "):
        print(PROPS.get(args[1].split()[1], ""))
    elif verb != "shell":
        sys.stderr.write(f"adb: unknown command {verb}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
