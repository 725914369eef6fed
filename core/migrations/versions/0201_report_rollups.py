"""report rollups: call_transfers, report_calls and report_intervals (reports/, docs/reports.md)

After upgrading a database that already holds calls, fill the rollups once with
`callcenter report rebuild`.

Revision ID: 0201_report_rollups
Revises: 0101_value_policy
Create Date: 2026-12-02 18:30:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0201_report_rollups'
down_revision = '0101_value_policy'
branch_labels = None
depends_on = None


def _figures() -> list[sa.Column]:
    return [*[sa.Column(name, sa.Integer(), nullable=False) for name in (
        'offered', 'answered', 'answered_within', 'abandoned', 'abandoned_short', 'failed')],
        sa.Column('wait_sum', sa.Float(), nullable=False),
        sa.Column('wait_max', sa.Float(), nullable=False),
        sa.Column('talk_n', sa.Integer(), nullable=False),
        sa.Column('talk_sum', sa.Float(), nullable=False),
        sa.Column('transfers', sa.Integer(), nullable=False),
        sa.Column('csat_n', sa.Integer(), nullable=False),
        sa.Column('csat_sum', sa.Float(), nullable=False),
        sa.Column('csat_good', sa.Integer(), nullable=False)]


def upgrade() -> None:
    op.create_table('call_transfers',
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('call_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('answered_at', core.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('wait_s', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_call_transfers'))
    )
    with op.batch_alter_table('call_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_call_transfers_call_id'), ['call_id'], unique=False)

    op.create_table('report_calls',
    sa.Column('call_id', sa.String(length=128), nullable=False),
    sa.Column('start', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    *_figures(),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_report_calls'))
    )
    with op.batch_alter_table('report_calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_calls_start'), ['start'], unique=False)

    op.create_table('report_intervals',
    sa.Column('start', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    *_figures(),
    sa.PrimaryKeyConstraint('start', 'queue', 'tier', name=op.f('pk_report_intervals'))
    )


def downgrade() -> None:
    op.drop_table('report_intervals')
    with op.batch_alter_table('report_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_calls_start'))
    op.drop_table('report_calls')
    with op.batch_alter_table('call_transfers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_call_transfers_call_id'))
    op.drop_table('call_transfers')
