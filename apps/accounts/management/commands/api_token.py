"""`python manage.py api_token USER [--write FILE]`: the user's API token, made if missing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print (or --write) a user's API token, made if needed (also managed in the admin)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--write", help="also write the token to this file (mode 600)")

    def handle(self, *args: Any, **opts: Any) -> None:
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(
                f"no user {opts['username']!r}: create it with createsuperuser first"
            )
        token, _ = Token.objects.get_or_create(user=user)
        if not opts["write"]:
            self.stdout.write(token.key)
            return
        path = Path(opts["write"])
        path.write_text(token.key + "\n")
        os.chmod(path, 0o600)
        self.stdout.write(f"API token of {user.username} written to {path}")
