# Reward-model versions and simulation runs move here from activelearn, so the two
# apps' models stop pointing at each other; Study's strategy and model type take
# their choices from the registries. The tables are adopted as they are (state only);
# 0011 gives them this app's names.

import django.db.models.deletion
from django.db import migrations, models

import annotation.loop
import models_runtime.kinds


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0009_importjob'),
        ('activelearn', '0004_simulationrun'),
    ]

    operations = [
        migrations.AlterField(
            model_name='study',
            name='model_type',
            field=models.CharField(choices=models_runtime.kinds.choices, default='mlp', max_length=16),
        ),
        migrations.AlterField(
            model_name='study',
            name='strategy',
            field=models.CharField(choices=annotation.loop.strategy_choices, default='uncertainty', max_length=32),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='RewardModelVersion',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('version', models.PositiveIntegerField()),
                        ('model_type', models.CharField(max_length=16)),
                        ('embedder_key', models.CharField(max_length=200)),
                        ('n_judgments', models.PositiveIntegerField(help_text='Judgments the fit saw (train + held out).')),
                        ('n_train', models.PositiveIntegerField(default=0)),
                        ('n_heldout', models.PositiveIntegerField(default=0)),
                        ('heldout_accuracy', models.FloatField(blank=True, null=True)),
                        ('heldout_log_loss', models.FloatField(blank=True, null=True)),
                        ('metrics', models.JSONField(default=dict)),
                        ('recommendation', models.JSONField(blank=True, default=dict, help_text='Per prompt: the best candidate and a leaderboard (posterior mean, std, P(best)).')),
                        ('train_seconds', models.FloatField(default=0.0)),
                        ('device', models.CharField(default='cpu', max_length=32)),
                        ('checkpoint_path', models.CharField(max_length=500)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='model_versions', to='annotation.study')),
                    ],
                    options={
                        'ordering': ('-version',),
                        'get_latest_by': 'version',
                        'db_table': 'activelearn_rewardmodelversion',
                        'constraints': [models.UniqueConstraint(fields=('study', 'version'), name='model_version_unique_per_study')],
                    },
                ),
                migrations.AlterField(
                    model_name='comparison',
                    name='model_version',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='annotation.rewardmodelversion'),
                ),
                migrations.CreateModel(
                    name='SimulationRun',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('started_at', models.DateTimeField()),
                        ('wall_seconds', models.FloatField(default=0.0)),
                        ('annotators', models.PositiveIntegerField(default=0)),
                        ('judgments', models.PositiveIntegerField(default=0, help_text='Judgments the simulated annotators submitted.')),
                        ('utility_kind', models.CharField(help_text='Where the hidden utilities came from: embedding or hash.', max_length=16)),
                        ('config', models.JSONField(blank=True, default=dict)),
                        ('totals', models.JSONField(blank=True, default=dict)),
                        ('checkpoints', models.JSONField(blank=True, default=list)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('study', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='simulation_runs', to='annotation.study')),
                    ],
                    options={
                        'db_table': 'activelearn_simulationrun',
                        'indexes': [models.Index(fields=['study', '-created_at'], name='simulationrun_study_recent')],
                    },
                ),
            ],
        ),
    ]
