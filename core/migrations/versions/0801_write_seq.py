"""numbered writes of a call: calls.seq and interactions.seq, and parked_updates for
writes that came before their row

Revision ID: 0801_write_seq
Revises: 0701_admin
Create Date: 2026-12-03 07:40:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0801_write_seq'
down_revision = '0701_admin'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('calls', 'interactions'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=False,
                                          server_default='0'))
    op.create_table('parked_updates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('table_name', sa.String(length=64), nullable=False),
    sa.Column('ident', sa.String(length=200), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('op', sa.Text(), nullable=False),
    sa.Column('parked_at', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parked_updates'))
    )
    op.create_index('ix_parked_updates_row', 'parked_updates', ['table_name', 'ident'])


def downgrade() -> None:
    op.drop_index('ix_parked_updates_row', table_name='parked_updates')
    op.drop_table('parked_updates')
    for table in ('interactions', 'calls'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('seq')
