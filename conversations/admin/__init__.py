"""Django admin, split by subject. Importing the modules registers their pages.

- providers: providers (write-only keys, Test connection, Sync models), models, personal keys
- users: users (approval, quotas, usage columns) and groups (which models a user may pick)
- chats: conversations, messages, attachments
- audit: the audit log (read only) and the mixin that feeds it
The usage dashboard is a view of its own (conversations/views/admin_usage.py), linked from the admin index.
"""

from conversations.admin import audit, chats, providers, users  # noqa: F401
