"""A real driver (psycopg 3) through the breakglass gateway: prints one JSON object of what it saw.

usage: pg_client.py URL
"""
import json
import sys
import threading
import time

import psycopg

url = sys.argv[1]
out = {}
with psycopg.connect(url, autocommit=True) as c:
    # Extended protocol, server-side parameters.
    out["param"] = c.execute("SELECT note FROM orders WHERE id = %s", (2,)).fetchone()[0]
    # A prepared statement (Parse once, Bind/Execute twice).
    for i in (1, 2):
        c.execute("SELECT id FROM orders WHERE id = %s", (i,), prepare=True)
    # A transaction.
    with c.transaction():
        c.execute("INSERT INTO orders VALUES (%s, %s)", (3, "three"))
        c.execute("UPDATE orders SET note = %s WHERE id = %s", ("tres", 3))
    # COPY in and out.
    with c.cursor() as cur:
        with cur.copy("COPY orders (id, note) FROM STDIN") as cp:
            cp.write_row((10, "copied-ten"))
            cp.write_row((11, "copied-eleven"))
        buf = b""
        with cur.copy("COPY (SELECT id FROM orders ORDER BY id) TO STDOUT") as cp:
            for data in cp:
                buf += bytes(data)
        out["copied_out"] = buf.decode().split()
    # An error.
    try:
        c.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero as e:
        out["error"] = e.sqlstate
    # Cancel a long statement.
    def cancel_soon():
        time.sleep(0.7)
        c.cancel()
    t = threading.Thread(target=cancel_soon)
    t.start()
    began = time.monotonic()
    try:
        c.execute("SELECT pg_sleep(30)")
        out["cancel"] = "not cancelled"
    except psycopg.errors.QueryCanceled as e:
        out["cancel"] = e.sqlstate
    out["cancel_secs"] = round(time.monotonic() - began, 2)
    t.join()
    out["after_cancel"] = c.execute("SELECT 42").fetchone()[0]
    # A literal password (the role may change its own).
    try:
        c.execute("ALTER ROLE CURRENT_USER PASSWORD 'hunter2-literal'")
        out["alter"] = "ok"
    except psycopg.Error as e:
        out["alter"] = e.sqlstate
print(json.dumps(out))
