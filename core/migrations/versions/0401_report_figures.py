"""report figures: wrap-up time of a call, its rollup columns, customer tier changes

`interactions.wrap_up_s` and the `wrap_n`/`wrap_sum` rollup columns give the average
handle time; `customer_tier_changes` the tier movements (docs/reports.md). Rollups of
calls stored before this upgrade have no wrap-up: `callcenter report rebuild` adds
what the records hold (none before this version).

Revision ID: 0401_report_figures
Revises: 0301_webhooks
Create Date: 2026-12-03 04:30:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0401_report_figures'
down_revision = '0301_webhooks'
branch_labels = None
depends_on = None

_ROLLUPS = ('report_calls', 'report_intervals')


def upgrade() -> None:
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wrap_up_s', sa.Float(), nullable=True))
    for table in _ROLLUPS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('wrap_n', sa.Integer(), nullable=False,
                                          server_default='0'))
            batch_op.add_column(sa.Column('wrap_sum', sa.Float(), nullable=False,
                                          server_default='0'))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('wrap_n', server_default=None)
            batch_op.alter_column('wrap_sum', server_default=None)
    op.create_table('customer_tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('from_tier', sa.String(length=16), nullable=False),
    sa.Column('to_tier', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_tier_changes'))
    )
    with op.batch_alter_table('customer_tier_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_tier_changes_customer_id'),
                              ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_tier_changes_at'), ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customer_tier_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_tier_changes_at'))
        batch_op.drop_index(batch_op.f('ix_customer_tier_changes_customer_id'))
    op.drop_table('customer_tier_changes')
    for table in _ROLLUPS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('wrap_sum')
            batch_op.drop_column('wrap_n')
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_column('wrap_up_s')
