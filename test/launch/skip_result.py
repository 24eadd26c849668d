"""Write a JUnit result marking a launch test skipped, with the reason (CMakeLists.txt registers
this instead of the launch test when launch_testing is not importable at configure time).

Usage: python skip_result.py RESULT_XML TEST_NAME REASON
"""

import pathlib
import sys
from xml.sax.saxutils import quoteattr


def main(result: str, name: str, reason: str) -> int:
    print(f"{name}: skipped: {reason}")
    path = pathlib.Path(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name={quoteattr(name)} tests="1" failures="0" errors="0" skipped="1">\n'
        f'  <testcase classname={quoteattr(name)} name={quoteattr(name)}>'
        f'<skipped type="skip" message={quoteattr(reason)}/></testcase>\n</testsuite>\n')
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
