"""Django admin for the embedding cache (read-only)."""

from django.contrib import admin

from activelearn.models import EmbeddingRecord


@admin.register(EmbeddingRecord)
class EmbeddingRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "dim", "created_at")
    search_fields = ("key",)
    # The vector is raw float32 bytes: never put it in a form or a list page.
    fields = ("key", "dim", "created_at")
    readonly_fields = ("key", "dim", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("vector")

    def has_add_permission(self, request) -> bool:
        return False
