from django.apps import AppConfig


class SearchConfig(AppConfig):
    name = "yesgoddess.search"
    label = "search"
    verbose_name = "Search"

    def ready(self) -> None:
        # Saving a searchable object marks it for reindexing (after commit).
        from .signals import connect_receivers

        connect_receivers()
