"""queue callbacks: their records, the callback a call placed, their rollup columns

Revision ID: 0803_callbacks
Revises: 0802_recording_pauses
Create Date: 2026-12-03 08:00:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0803_callbacks'
down_revision = '0802_recording_pauses'
branch_labels = None
depends_on = None


_ROLLUPS = ('report_calls', 'report_intervals')


def upgrade() -> None:
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_id', sa.String(length=64), nullable=True))
    for table in _ROLLUPS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in ('callbacks', 'callbacks_connected'):
                batch_op.add_column(sa.Column(column, sa.Integer(), nullable=False,
                                              server_default='0'))
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in ('callbacks', 'callbacks_connected'):
                batch_op.alter_column(column, server_default=None)
    op.create_table('callbacks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('call_id', sa.String(length=128), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=True),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_outcome', sa.String(length=16), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('requested_by', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('integration', sa.String(length=64), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('rings', sa.Text(), nullable=False),
    sa.Column('offered_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('requested_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', core.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callbacks'))
    )
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callbacks_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_callbacks_customer_id'), ['customer_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_callbacks_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_callbacks_requested_at'), ['requested_at'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('callbacks')
    for table in _ROLLUPS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('callbacks_connected')
            batch_op.drop_column('callbacks')
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_column('callback_id')
