"""Plain synchronous code (a script, a Django view, a cron job) using `finalpos_sync.FinalPOS`.

    python examples/legacy_sync.py

No asyncio in sight: the sync client runs the same async core on a private loop thread. Create
it once and reuse it (it is safe to share between threads); close it when done, or use `with`.
With no FINALPOS_API_KEY it talks to an embedded sandbox.
"""

from __future__ import annotations

import os

from finalpos_sync import FinalPOS, NotFoundError


def main() -> None:
    client = FinalPOS() if os.environ.get("FINALPOS_API_KEY") else FinalPOS(sandbox=True)
    with client:
        created = client.customers.create(
            email="grace@example.com",
            first_name="Grace",
            last_name="Hopper",
            tags=["legacy"],
            billing={"city": "Arlington", "country": "USA"},
        )
        print(f"created {created.id} {created.email}")

        updated = client.customers.update(created.id, phone="+15550100")
        print(f"updated phone: {updated.phone}")

        # Iterating a list fetches page after page lazily; max_items caps it.
        for customer in client.customers.list(limit=50, max_items=5):
            print(f"listed {customer.id} {customer.email}")

        client.customers.delete(created.id)
        try:
            client.customers.retrieve(created.id)
        except NotFoundError as exc:
            print(f"deleted: retrieve now fails with {exc.status_code}")


if __name__ == "__main__":
    main()
