#!/usr/bin/env python3
"""Client conformance: drives rowcast's /rest with the unmodified postgrest-py client.

Usage: postgrest_py.py BASE_URL TOKEN TENANT_ID
  BASE_URL   e.g. http://127.0.0.1:8080/rest
  TOKEN      a bearer token of a member of TENANT_ID (tenant_user is enough)
  TENANT_ID  the tenant to act in (sent as X-Tenant-ID)

Needs `pip install postgrest` (tested with postgrest 2.34.1). The tenant should start with
no contacts. Exits 0 when every check passes, 1 otherwise (printing what failed).
"""

import sys
import uuid

from postgrest import APIError, SyncPostgrestClient

CHECKS = []


def check(name, condition, detail=""):
    CHECKS.append((name, bool(condition), detail))
    mark = "ok  " if condition else "FAIL"
    print(f"{mark} {name}" + (f"  ({detail})" if detail and not condition else ""))


def expect_error(name, action, code=None):
    try:
        action()
    except APIError as e:
        check(name, code is None or e.code == code, f"code {e.code!r}, message {e.message!r}")
        return
    check(name, False, "no error raised")


def main(base_url, token, tenant):
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}
    client = SyncPostgrestClient(base_url, headers=headers)
    contacts = lambda: client.table("contacts")  # noqa: E731

    # insert: one object, then an array (sent with columns=)
    ann = contacts().insert({"phone": "+15557000001", "first_name": "Ann", "attributes": {"vip": True}}).execute()
    check("insert returns the row", len(ann.data) == 1 and ann.data[0]["first_name"] == "Ann", ann.data)
    check("insert fills defaults", ann.data[0]["tenant_id"] == tenant and ann.data[0]["opted_out"] is False, ann.data)
    ann_id = ann.data[0]["id"]
    many = contacts().insert([
        {"phone": "+15557000002", "first_name": "Bob", "last_name": "B"},
        {"phone": "+15557000003", "first_name": "Cid", "last_name": "C"},
        {"phone": "+15557000004", "first_name": "dee", "last_name": None},
    ]).execute()
    check("insert of a list returns every row", len(many.data) == 3, many.data)

    # select, filters, order, limit, range, count
    rows = contacts().select("first_name").order("phone").execute().data
    check("select all, ordered", [r["first_name"] for r in rows] == ["Ann", "Bob", "Cid", "dee"], rows)
    rows = contacts().select("phone").order("phone", desc=True).limit(2).execute().data
    check("order desc + limit", [r["phone"] for r in rows] == ["+15557000004", "+15557000003"], rows)
    rows = contacts().select("first_name").order("phone").range(1, 2).execute().data
    check("range", [r["first_name"] for r in rows] == ["Bob", "Cid"], rows)
    counted = contacts().select("id", count="exact").limit(1).execute()
    check("count=exact", counted.count == 4 and len(counted.data) == 1, (counted.count, counted.data))
    check("eq", len(contacts().select("id").eq("first_name", "Ann").execute().data) == 1)
    check("neq", len(contacts().select("id").neq("first_name", "Ann").execute().data) == 3)
    check("gt / lt", len(contacts().select("id").gt("phone", "+15557000001").lt("phone", "+15557000004").execute().data) == 2)
    check("gte / lte", len(contacts().select("id").gte("phone", "+15557000002").lte("phone", "+15557000003").execute().data) == 2)
    check("like", [r["first_name"] for r in contacts().select("first_name").like("first_name", "B%").execute().data] == ["Bob"])
    check("ilike", [r["first_name"] for r in contacts().select("first_name").ilike("first_name", "D%").execute().data] == ["dee"])
    check("in_", len(contacts().select("id").in_("first_name", ["Ann", "Cid", "Zed"]).execute().data) == 2)
    check("is_ null", [r["first_name"] for r in contacts().select("first_name").is_("last_name", "null").execute().data] == ["Ann", "dee"])
    check("not_", len(contacts().select("id").not_.is_("last_name", "null").execute().data) == 2)
    check("or_", len(contacts().select("id").or_("first_name.eq.Ann,first_name.eq.Bob").execute().data) == 2)
    check("match", len(contacts().select("id").match({"first_name": "Cid", "last_name": "C"}).execute().data) == 1)
    one = contacts().select("first_name,attributes").eq("id", ann_id).single().execute()
    check("single", one.data == {"first_name": "Ann", "attributes": {"vip": True}}, one.data)
    none = contacts().select("id").eq("first_name", "Nobody").maybe_single().execute()
    check("maybe_single with no row", none is None, none)
    expect_error("single with several rows", lambda: contacts().select("id").single().execute(), "PGRST116")

    # update, upsert, delete
    upd = contacts().update({"last_name": "A"}).eq("id", ann_id).execute()
    check("update returns the row", len(upd.data) == 1 and upd.data[0]["last_name"] == "A", upd.data)
    ups = contacts().upsert({"id": ann_id, "phone": "+15557000001", "first_name": "Anna"}).execute()
    check("upsert merges", len(ups.data) == 1 and ups.data[0]["first_name"] == "Anna", ups.data)
    new_id = str(uuid.uuid4())
    ups = contacts().upsert({"id": new_id, "phone": "+15557000005", "first_name": "Eve"}).execute()
    check("upsert inserts", len(ups.data) == 1 and ups.data[0]["id"] == new_id, ups.data)
    gone = contacts().delete().eq("id", new_id).execute()
    check("delete returns the row", len(gone.data) == 1 and gone.data[0]["deleted_at"] is not None, gone.data)
    check("deleted rows are hidden", contacts().select("id").eq("id", new_id).execute().data == [])
    check("update of nothing", contacts().update({"last_name": "Z"}).eq("first_name", "Nobody").execute().data == [])
    expect_error("max_affected", lambda: contacts().update({"last_name": "Z"}).neq("first_name", "Nobody").max_affected(1).execute(), "PGRST124")
    check("max_affected rolled back", contacts().select("id").eq("last_name", "Z").execute().data == [])

    # rpc and errors
    group = client.table("groups").insert({"name": "Conformance"}).execute().data[0]["id"]
    added = client.rpc("group_add_contacts", {"p_group_id": group, "p_contact_ids": [ann_id]}).execute()
    check("rpc returns its scalar", added.data == 1, added.data)
    expect_error("unknown table", lambda: client.table("nope").select("*").execute(), "PGRST205")
    expect_error("unknown column", lambda: contacts().select("nope").execute(), "42703")
    expect_error("constraint violation", lambda: contacts().insert({"phone": "+15557000002"}).execute(), "23505")
    expect_error("check violation", lambda: contacts().insert({"phone": "not a phone"}).execute(), "23514")
    expect_error("unknown function", lambda: client.rpc("nope", {}).execute(), "PGRST202")
    expect_error("update without a filter", lambda: contacts().update({"last_name": "Z"}).execute(), "21000")

    client.aclose()
    failed = [name for name, ok, _ in CHECKS if not ok]
    print(f"{len(CHECKS) - len(failed)}/{len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
