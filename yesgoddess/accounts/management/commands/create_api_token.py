from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from yesgoddess.accounts.models import ApiToken


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print it (and nothing else)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label for the token")
        parser.add_argument(
            "--service",
            action="store_true",
            help="a server-side collector's token: its analytics events are trusted (revenue, any object)",
        )

    def handle(self, *args, username: str, name: str, service: bool, **options) -> None:
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        _, raw = ApiToken.objects.issue(user, name=name, service=service)
        self.stdout.write(raw)
