# Invite links, quotas and completion codes. The invite token is unique, so it is
# added nullable, filled per row, then made unique (Django's documented pattern).

from django.db import migrations, models

import annotation.models


def fill_tokens(apps, schema_editor):
    Study = apps.get_model("annotation", "Study")
    for study in Study.objects.filter(invite_token__isnull=True).only("id"):
        study.invite_token = annotation.models.new_invite_token()
        study.save(update_fields=["invite_token"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0006_blind_mode"),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="entry",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="study",
            name="annotator_quota",
            field=models.PositiveIntegerField(
                blank=True, help_text="Most judgments one annotator may give; empty for no limit.", null=True
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="completion_code",
            field=models.CharField(
                blank=True,
                help_text="Shown to annotators when they finish, e.g. a Prolific completion code.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="completion_url",
            field=models.URLField(
                blank=True,
                help_text="Where finished annotators are sent back to, e.g. "
                "https://app.prolific.com/submissions/complete?cc=CODE.",
            ),
        ),
        migrations.AddField(
            model_name="study",
            name="invite_token",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.RunPython(fill_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="study",
            name="invite_token",
            field=models.CharField(
                default=annotation.models.new_invite_token,
                help_text="The secret in the study's invite link (/join/<token>/); change it to revoke the old link.",
                max_length=64,
                unique=True,
            ),
        ),
    ]
