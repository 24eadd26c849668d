"""Print one closing line for the test results colcon collected: 'tests: N passed, N failed, N skipped'.

Counts every JUnit file under the folder: pytest's, and the launch tests' (launch_testing's
runner, or the skipped result written where launch_testing is missing). Each <testcase> counts
once: failed if it has a <failure> or <error>, skipped if it has <skipped>, else passed. A skipped
test's reason is printed. Exits 1 when there are failures or no test ran at all.
"""

import pathlib
import sys
import xml.etree.ElementTree as ET


def count(folder: str) -> dict:
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for path in sorted(pathlib.Path(folder).rglob("*.xml")):
        for case in ET.parse(path).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                totals["failed"] += 1
            elif (skipped := case.find("skipped")) is not None:
                totals["skipped"] += 1
                if path.name.startswith("launch_"):
                    print(f"skipped {case.get('name')}: {skipped.get('message', '')}")
            else:
                totals["passed"] += 1
    return totals


def main(folder: str) -> int:
    totals = count(folder)
    print(f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if totals["failed"] or not sum(totals.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
