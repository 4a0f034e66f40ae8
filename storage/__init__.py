"""MongoDB persistence through motor: one repository per collection.

Every repository method takes ``tenant_id`` as its first argument and puts it in
every filter, so no query can cross tenants by omission.
"""

from storage.database import Storage, open_storage

__all__ = ["Storage", "open_storage"]
